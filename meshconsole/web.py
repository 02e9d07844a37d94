"""`meshconsole web`: the ASGI server (uvicorn) for production and for `up`."""

from __future__ import annotations

import argparse
import os
import sys


def parse_bind(value: str) -> tuple[str, int]:
    """'HOST:PORT' (or '[::1]:PORT', or a bare PORT) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT") from None
    if not 0 < number < 65536:
        raise argparse.ArgumentTypeError(f"port {number} is out of range")
    return host, number


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
