"""`meshconsole`: the all-in-one `up`, the ASGI server `web`, and every manage.py command.

    meshconsole up [--bind 127.0.0.1:8000] [--data-dir DIR] [--demo]
    meshconsole web [--bind HOST:PORT] [--workers N]
    meshconsole apitoken USERNAME | enrolltoken | resetpassword [USERNAME] | migrate | ...

The global option `--data-dir DIR` works for every command, before or after
it: it sets MESH_DATA_DIR before the settings load (they read it once).
Every command runs with umask 077 and first makes the data dir private
(meshconsole.datadir): it holds the database, the secret key and the logs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

from meshconsole import datadir

USAGE = """\
usage: meshconsole COMMAND [ARGS] [--data-dir DIR]

  --data-dir DIR  where the database, secret key, logs and embedded Redis live
                  (default: $MESH_DATA_DIR, else ~/.meshconsole); before or after COMMAND

commands:
  up             migrate, then run the ASGI server, a Celery worker and beat
                 (and an embedded Redis unless REDIS_URL is set); --demo adds a live demo mesh
  web            the ASGI server alone (production: behind your load balancer)
  apitoken       print a new API token for a user (rotates the old one)
  enrolltoken    print a new agent enrollment token
  resetpassword  set and print a new password for a user (default: admin)
  help           Django's list of every other command (migrate, createsuperuser,
                 changepassword, ...)
"""

# Options of `meshconsole` itself, taken out of the arguments wherever they
# stand, so `meshconsole apitoken admin --data-dir X` and `meshconsole
# --data-dir X apitoken admin` are the same command. Each sets a variable.
GLOBAL_OPTIONS = {"--data-dir": "MESH_DATA_DIR"}


def _values(argv: list[str]) -> Iterator[tuple[str | None, str]]:
    """(option, value) for each global option in ARGV, (None, arg) for the rest."""
    args = iter(argv)
    for arg in args:
        if arg == "--":  # everything after belongs to the command
            yield None, arg
            for rest in args:
                yield None, rest
            return
        name, eq, value = arg.partition("=")
        if name not in GLOBAL_OPTIONS:
            yield None, arg
            continue
        if not eq:
            value = next(args, "")
        if not value or value.startswith("-"):
            raise SystemExit(f"meshconsole: {name} needs a value")
        yield name, value


def take_global_options(argv: list[str]) -> list[str]:
    """Remove the global options from ARGV (before or after the command) and
    export each; return the command and its own arguments."""
    rest: list[str] = []
    for option, value in _values(argv):
        if option is None:
            rest.append(value)
        elif option == "--data-dir":
            os.environ[GLOBAL_OPTIONS[option]] = str(Path(value).expanduser().resolve())
    return rest


def main(argv: list[str] | None = None) -> int:
    args = take_global_options(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    previous = os.umask(datadir.PRIVATE_UMASK)
    try:
        data_dir = datadir.resolve()
        try:
            datadir.tighten(data_dir)
        except OSError as exc:  # a file in the way, no permission, a read-only mount
            print(f"meshconsole: cannot use the data dir {data_dir}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 2
        return run(args[0], args[1:])
    finally:
        os.umask(previous)


def run(command: str, rest: list[str]) -> int:
    if command == "up":
        from meshconsole import up

        return up.main(rest)
    if command == "web":
        from meshconsole import web

        return web.main(rest)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "meshconsole.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(["meshconsole", command, *rest])
    return 0


if __name__ == "__main__":
    sys.exit(main())
