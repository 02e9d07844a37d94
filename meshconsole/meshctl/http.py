"""meshctl's HTTP client and table printing (standard library only)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT = 30.0
PAGE_SIZE = 1000  # the API's largest page: fewest round trips for a whole list


class CtlError(Exception):
    def __init__(self, message: str, code: int = 1, *, body: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.body = body  # the API's parsed error answer, for commands that map it further


def jsonable(value: Any, where: str) -> Any:
    """VALUE read from a file as the API will take it: YAML's timestamps and sets
    spelled as strings; CtlError (bad usage) for what JSON cannot carry."""
    try:
        return json.loads(json.dumps(value, default=str, allow_nan=False))
    except ValueError as exc:
        # json says "Circular reference detected" / "Out of range float values ...".
        problem = (
            "a YAML alias contains itself"
            if "ircular" in str(exc)
            else "a number out of range (.inf or .nan)"
        )
        raise CtlError(f"{where}: {problem}", 2) from None


# -- HTTP -------------------------------------------------------------------
def flatten_errors(data: Any, prefix: str = "") -> list[str]:
    """DRF error bodies ({"detail": ...}, {"field": [...]}, nested) as 'field: message' lines."""
    if isinstance(data, dict):
        out: list[str] = []
        for key, value in data.items():
            name = "" if key in ("detail", "non_field_errors") else str(key)
            out += flatten_errors(value, f"{prefix}.{name}" if prefix and name else prefix or name)
        return out
    if isinstance(data, list):
        if data and all(isinstance(v, str) for v in data):
            return [f"{prefix}: {'; '.join(data)}" if prefix else "; ".join(data)]
        return [line for value in data for line in flatten_errors(value, prefix)]
    text = str(data)
    return [f"{prefix}: {text}" if prefix else text]


def _printable(text: str) -> bool:
    return all("!" <= c <= "~" for c in text)


class Client:
    def __init__(self, base_url: str, token: str) -> None:
        base_url = base_url.strip()
        try:
            parts = urllib.parse.urlsplit(base_url)
        except ValueError as exc:  # "http://[::1": Invalid IPv6 URL
            raise CtlError(f"MESH_URL {base_url!r} is not an http(s) URL: {exc}", 2) from None
        if (parts.scheme not in ("http", "https") or not parts.netloc
                or not _printable(base_url)):
            raise CtlError(f"MESH_URL {base_url!r} is not an http(s) URL", 2)
        self.base_url = base_url.rstrip("/")
        # Whitespace around it is not part of a token (one read from a file ends in a
        # newline); inside it, a character urllib would refuse as a header is bad usage.
        self.token = token.strip()
        if not _printable(self.token):
            raise CtlError("MESH_TOKEN has characters no token has (spaces, control "
                           "characters or non-ASCII)", 2)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base_url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Token {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            raise CtlError(self._http_error(exc, parsed), body=parsed) from None
        except urllib.error.URLError as exc:
            reason = getattr(exc.reason, "strerror", None) or str(exc.reason)
            raise CtlError(
                f"cannot reach {self.base_url} ({reason}); is the control plane running? "
                "(set MESH_URL)",
                3,
            ) from None
        except (TimeoutError, OSError) as exc:
            raise CtlError(f"cannot reach {self.base_url} ({exc or 'timed out'})", 3) from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise CtlError(f"{self.base_url} did not answer JSON; is MESH_URL right?") from None

    def list_all(self, path: str) -> list[Any]:
        """Every row of a paginated list ({"count", "next", "results"}), following `next`."""
        sep = "&" if "?" in path else "?"
        url: str | None = f"{path}{sep}page_size={PAGE_SIZE}"
        rows: list[Any] = []
        prefix = urllib.parse.urlsplit(self.base_url).path.rstrip("/")
        while url:
            page = self.request("GET", url)
            if not isinstance(page, dict) or not isinstance(page.get("results"), list):
                raise CtlError(f"{self.base_url} did not answer a list page; is MESH_URL right?")
            rows += page["results"]
            url = None
            if page.get("next"):
                # `next` is absolute as the server sees itself; follow it through MESH_URL.
                parts = urllib.parse.urlsplit(str(page["next"]))
                path_part = parts.path.removeprefix(prefix) if prefix else parts.path
                url = path_part + (f"?{parts.query}" if parts.query else "")
        return rows


    def _http_error(self, exc: urllib.error.HTTPError, parsed: Any) -> str:
        details = flatten_errors(parsed) if parsed is not None else []
        status = f"{exc.code} {exc.reason}"
        if exc.code == 401:
            hint = "set MESH_TOKEN (make one with `meshconsole apitoken USERNAME`)"
            if not self.token:
                return f"{status}: no MESH_TOKEN set; {hint}"
            return f"{status}: {'; '.join(details) or 'token refused'}; {hint}"
        return f"{status}: {'; '.join(details)}" if details else status


# -- output -----------------------------------------------------------------
def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(str(v)) for v in column) for column in zip(headers, *rows, strict=False)]
    lines = [
        "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=False)).rstrip()
        for row in [headers, *rows]
    ]
    return "\n".join(lines)
