"""The data dir and what it holds, readable by its owner only.

The SQLite database holds password hashes and tokens, `secret_key` signs
sessions, the logs and the demo's agent.yaml files carry tokens and addresses:
the dir is 0700 and each of these 0600. Commands run with umask 077 so what
they create is private from the start, and `tighten` fixes what an older
version (or a hand-made dir) left with looser modes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

PRIVATE_UMASK = 0o077
DIR_MODE = 0o700
DEFAULT = Path.home() / ".meshconsole"

# Only what meshconsole itself puts there: the dir may be shared with other
# things (a --data-dir of one's choosing), which are not ours to change.
_FILES = (
    "meshconsole.sqlite3",
    "secret_key",
    "redis.log",
    "redis.sock",
)
_PATTERNS = ("meshconsole.sqlite3-*", "celerybeat-schedule*", "secret_key.tmp")
_TREES = ("logs", "demo")


def resolve() -> Path:
    """MESH_DATA_DIR, else ~/.meshconsole (what the settings read)."""
    return Path(os.environ.get("MESH_DATA_DIR") or DEFAULT).expanduser()


def _private(path: Path) -> None:
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        return  # chmod would follow it to something that is not ours
    mode = stat.S_IMODE(st.st_mode)
    wanted = DIR_MODE if stat.S_ISDIR(st.st_mode) else mode & ~PRIVATE_UMASK
    if mode != wanted:
        try:
            os.chmod(path, wanted)
        except PermissionError:
            pass  # someone else's file in our dir: nothing we may do


def _walk(root: Path) -> Iterator[Path]:
    if not root.is_dir() or root.is_symlink():
        return
    yield root
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            yield Path(dirpath) / name


def sqlite_files(database: Path) -> list[Path]:
    """The database file and its WAL, shared-memory and journal files."""
    suffixes = ("-wal", "-shm", "-journal")
    return [database, *(database.with_name(database.name + s) for s in suffixes)]


def tighten(data_dir: Path, extra: Iterable[Path] = ()) -> None:
    """Create DATA_DIR 0700 if missing; make it and what meshconsole keeps in
    it (plus EXTRA, e.g. a SQLite file elsewhere) private to the owner."""
    data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _private(data_dir)
    paths: list[Path] = [data_dir / name for name in _FILES]
    for pattern in _PATTERNS:
        paths.extend(data_dir.glob(pattern))
    for tree in _TREES:
        paths.extend(_walk(data_dir / tree))
    for path in extra:
        paths.extend(sqlite_files(path))
    for path in paths:
        _private(path)
