"""`meshconsole web`: the ASGI server (uvicorn) for production and for `up`."""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys

# HOST is a name or IPv4 address, or an IPv6 address in brackets; PORT ASCII digits.
_BIND = re.compile(r"(?:(?:\[([0-9A-Fa-f:.]+)\]|([^\s:\[\]]*)):)?([0-9]{1,5})", re.ASCII)


def parse_bind(value: str) -> tuple[str, int]:
    """'HOST:PORT' (or '[::1]:PORT', or a bare PORT) -> (host, port)."""
    match = _BIND.fullmatch(value)
    v6 = match.group(1) if match else None
    if match is None or (v6 is not None and not _is_ipv6(v6)):
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    host = v6 or match.group(2) or "127.0.0.1"
    number = int(match.group(3))
    if not 0 < number < 65536:
        raise argparse.ArgumentTypeError(f"port {number} is out of range")
    return host, number


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshconsole web", description="Serve the console, REST API and websockets."
    )
    parser.add_argument("--bind", type=parse_bind, default=("127.0.0.1", 8000), metavar="HOST:PORT")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--proxy-headers",
        action="store_true",
        help="trust X-Forwarded-For/-Proto from --forwarded-allow-ips (behind a load balancer)",
    )
    parser.add_argument("--forwarded-allow-ips", default="127.0.0.1")
    parser.add_argument("--access-log", action="store_true", help="log every request")
    parser.add_argument("--log-level", default="info", help="uvicorn's own log level")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.workers < 1:
        print("meshconsole web: --workers must be at least 1", file=sys.stderr)
        return 2
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meshconsole.settings")
    import uvicorn

    host, port = args.bind
    uvicorn.run(
        "meshconsole.asgi:application",
        host=host,
        port=port,
        workers=args.workers,
        loop="uvloop",
        http="httptools",
        # Django's ASGI handler does not speak lifespan; "auto" would only log that.
        lifespan="off",
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=args.forwarded_allow_ips if args.proxy_headers else None,
        access_log=args.access_log,
        log_level=args.log_level,
        # Long-polls and websockets must not hold a restart or a stop hostage.
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    return 0
