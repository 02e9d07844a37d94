"""What `meshagent run` will bind, checked before it does (and by `meshagent check`).

The config's own check compares listen addresses as written; here they are
resolved as the listeners will resolve them (every address a name has, as
asyncio binds them all), so `localhost:P` beside `127.0.0.1:P`, or `0.0.0.0:P`
beside either, is caught; and each address is bound once on port 0, which
proves it belongs to this host without needing the port to be free (a running
agent holds it).
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from agents.runtime.config import AgentConfig, ConfigError, join_host_port


@dataclass(frozen=True)
class Binding:
    path: str  # e.g. upstreams[0].listen
    listen: str  # as written
    port: int
    addresses: frozenset[tuple[int, str]]  # (family, IP) the listener binds


def _resolve(path: str, host: str, port: int) -> Binding:
    listen = join_host_port(host, port)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{path}: cannot resolve {host!r}: {reason}") from None
    addresses = frozenset((int(family), str(address[0])) for family, _, _, _, address in infos
                          if family in (socket.AF_INET, socket.AF_INET6))
    if not addresses:
        raise ConfigError(f"{path}: {host!r} has no IPv4 or IPv6 address")
    for family, ip in sorted(addresses):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((ip, 0))
            except OSError as exc:
                raise ConfigError(f"{path}: cannot listen on {listen}: {ip} is not an address "
                                  f"of this host ({exc.strerror or exc})") from None
    return Binding(path, listen, port, addresses)


def _overlap(a: Binding, b: Binding) -> str | None:
    """The address two listeners on one port would both bind (listeners on IPv6 are
    IPv6-only, as asyncio makes them), or None."""
    for family, ip in sorted(a.addresses):
        for other_family, other_ip in sorted(b.addresses):
            if family != other_family:
                continue
            if ip == other_ip or ipaddress.ip_address(ip).is_unspecified or (
                    ipaddress.ip_address(other_ip).is_unspecified):
                return join_host_port(other_ip if ipaddress.ip_address(ip).is_unspecified
                                      else ip, a.port)
    return None


def check_bindings(config: AgentConfig, source: str = "agent.yaml") -> None:
    """ConfigError naming the first listen address `run` could not bind."""
    wanted = [("admin", config.admin_host, config.admin_port)] + [
        (f"upstreams[{i}].listen", u.host, u.port) for i, u in enumerate(config.upstreams)]
    if config.inbound is not None:
        wanted.append(("inbound.listen", config.inbound.host, config.inbound.port))
    if config.gateway is not None:
        wanted += [(f"gateway.listeners[{i}].listen", g.host, g.port)
                   for i, g in enumerate(config.gateway.listeners)]
    bindings: list[Binding] = []
    for path, host, port in wanted:
        try:
            binding = _resolve(path, host, port)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        for earlier in bindings:
            if binding.port == 0 or earlier.port != binding.port:
                continue
            shared = _overlap(binding, earlier)
            if shared is not None:
                raise ConfigError(f"{source}: {path}: {binding.listen} would bind {shared}, "
                                  f"already used by {earlier.path} ({earlier.listen})")
        bindings.append(binding)
