"""agent.yaml as YAML: PyYAML's safe loader, stricter, every error one line with its place.

Stricter than yaml.safe_load in two ways: a key given twice in one mapping is
refused (safe_load keeps the last silently, so a second `node:` would win
unseen), and nesting is bounded (a deeply nested document would otherwise end
in a RecursionError inside the composer). Errors carry the line and column
PyYAML knows; a reader error (a control character) knows only the character
offset, which is turned into its line and column.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode

MAX_DEPTH = 64  # agent.yaml itself needs 4


class StrictLoader(yaml.SafeLoader):
    depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self.depth -= 1

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue  # a merge (<<) may be overridden; unhashable keys fail below
            key = self.construct_object(key_node)
            try:
                first = seen.get(key)
            except TypeError:
                continue
            if first is not None:
                raise ConstructorError(None, None, f"duplicate key {key!r} (first on line {first})",
                                       key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]


def load_yaml(text: str) -> object:
    """The document in TEXT; ValueError with `line L, column C: problem` when it is not one."""
    try:
        return yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        raise ValueError(f"line {line}, column {column}: control character "
                         f"{ord(char):#06x} is not allowed ({exc.reason})") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ValueError(f"{where}{problem}") from None
    except yaml.YAMLError as exc:
        raise ValueError(str(exc).splitlines()[0] if str(exc) else "invalid YAML") from None
    except RecursionError:  # a guard behind MAX_DEPTH: never a traceback
        raise ValueError(f"nested more than {MAX_DEPTH} levels deep") from None
