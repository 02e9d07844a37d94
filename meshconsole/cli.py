"""`meshconsole`: the all-in-one `up`, the ASGI server `web`, and every manage.py command.

    meshconsole up [--bind 127.0.0.1:8000] [--data-dir DIR] [--demo]
    meshconsole web [--bind HOST:PORT] [--workers N]
    meshconsole apitoken USERNAME | enrolltoken | migrate | createsuperuser | ...

A leading `--data-dir DIR` works for every command: it sets MESH_DATA_DIR before
the settings load (the settings read it once).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

USAGE = """\
usage: meshconsole [--data-dir DIR] COMMAND [ARGS]

commands:
  up           migrate, then run the ASGI server, a Celery worker and beat
               (and an embedded Redis unless REDIS_URL is set); --demo adds a live demo mesh
  web          the ASGI server alone (production: behind your load balancer)
  apitoken     print a new API token for a user (rotates the old one)
  enrolltoken  print a new agent enrollment token
  help         Django's list of every other command (migrate, createsuperuser,
               changepassword, ...)
"""


def take_data_dir(argv: list[str]) -> list[str]:
    """Remove a leading --data-dir option from ARGV and export it as MESH_DATA_DIR."""
    rest = list(argv)
    while rest and rest[0].startswith("--data-dir"):
        option = rest.pop(0)
        if option.startswith("--data-dir="):
            value = option.split("=", 1)[1]
        elif rest:
            value = rest.pop(0)
        else:
            raise SystemExit("meshconsole: --data-dir needs a directory")
        os.environ["MESH_DATA_DIR"] = str(Path(value).expanduser().resolve())
    return rest


def main(argv: list[str] | None = None) -> int:
    args = take_data_dir(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    command, rest = args[0], args[1:]
    if command == "up":
        from meshconsole import supervisor

        return supervisor.main(rest)
    if command == "web":
        from meshconsole import web

        return web.main(rest)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meshconsole.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["meshconsole", *args])
    return 0


if __name__ == "__main__":
    sys.exit(main())
