"""DNS for the agent's upstreams, answered from the applied snapshot (docs/agent.md).

  payments.service.mesh           A / AAAA / SRV   the endpoints a request would use
  v2.payments.service.mesh        A / AAAA / SRV   only those tagged v2
  _payments._tcp.service.mesh     SRV              RFC 2782 spelling of the same
  <hex ip>.addr.service.mesh      A / AAAA         the targets of SRV answers

Which endpoints: the upstream's own selection plan (agents.runtime.locality via
UpstreamRuntime: maintenance and draining never, panic, priority levels, zones,
ejections, failover targets), one traffic share drawn per answer as a request
would, then shuffled by weight. Only the agent's upstreams are known; anything
else under service.mesh is NXDOMAIN, anything outside it REFUSED. The wire
format is dnspython's; a query it cannot parse gets FORMERR.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import struct
from collections.abc import Sequence
from typing import Protocol

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV
import dns.rrset

from agents.runtime.endpoint import Endpoint
from agents.runtime.snapshot import Snapshot
from agents.runtime.upstream import UpstreamRuntime

log = logging.getLogger("meshagent.dns")

ZONE = dns.name.from_text("service.mesh.")
ADDR = dns.name.from_text("addr.service.mesh.")
TTL_S = 5  # short: health changes reach clients that cache within seconds
IN = dns.rdataclass.IN
A, AAAA, SRV, ANY = (dns.rdatatype.A, dns.rdatatype.AAAA, dns.rdatatype.SRV,
                     dns.rdatatype.ANY)


class DnsSource(Protocol):
    upstreams: list[UpstreamRuntime]
    snapshot: Snapshot | None


def weighted_shuffle(endpoints: Sequence[Endpoint], rng: random.Random) -> list[Endpoint]:
    """Every endpoint of weight > 0, heavier ones first more often (Efraimidis-Spirakis)."""
    keyed = [(rng.random() ** (1.0 / e.weight), e) for e in endpoints if e.weight > 0]
    keyed.sort(key=lambda pair: pair[0], reverse=True)
    return [e for _, e in keyed]


class Resolver:
    def __init__(self, source: DnsSource, rng: random.Random | None = None) -> None:
        self.source = source
        self.rng = rng or random.Random()

    def endpoints(self, service: str, tag: str | None) -> list[Endpoint] | None:
        """What SERVICE (its TAG subset) resolves to now; None if it is no upstream."""
        runtime = next((u for u in self.source.upstreams if u.service == service), None)
        if runtime is None:
            return None
        plan = runtime.state.plan
        group: Sequence[Endpoint] = plan.choose(self.rng)
        if tag is not None:
            tagged = self._tagged(service, tag)
            group = [e for e in group if e.key in tagged] or [
                e for e in plan.fallback if e.key in tagged]
        return weighted_shuffle(group, self.rng)

    def _tagged(self, service: str, tag: str) -> set[str]:
        """Keys of SERVICE's endpoints in its subset named TAG if it defines one,
        else of those carrying the tag TAG."""
        snapshot = self.source.snapshot
        upstream = snapshot.upstreams.get(service) if snapshot else None
        if upstream is None:
            return set()
        subset = upstream.subsets.get(tag)
        if subset is not None:  # a named subset of the service's routes (docs/policies.md)
            return {f"{s.id}@{s.address}:{s.port}" for s in upstream.endpoints
                    if subset.selects(s.tags, dict(s.metadata))}
        return {f"{s.id}@{s.address}:{s.port}" for s in upstream.endpoints if tag in s.tags}

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags &= ~dns.flags.RA  # no recursion: only our zone is answered
        if query.opcode() != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return response
        if len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
            return response
        question = query.question[0]
        name, rdtype = question.name, question.rdtype
        if question.rdclass != IN or not name.is_subdomain(ZONE):
            response.set_rcode(dns.rcode.REFUSED)
            return response
        response.flags |= dns.flags.AA
        if name.is_subdomain(ADDR):
            self._addr(response, name, rdtype)
            return response
        labels = [label.decode("ascii", "replace").lower()
                  for label in name.relativize(ZONE).labels]
        parsed = _service_name(labels)
        found = None if parsed is None else self.endpoints(*parsed)
        if found is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response
        if rdtype in (A, AAAA, ANY):
            self._addresses(response, name, found, rdtype)
        if rdtype in (SRV, ANY):
            self._srv(response, name, found)
        return response

    def _addresses(self, response: dns.message.Message, name: dns.name.Name,
                   endpoints: Sequence[Endpoint], rdtype: int) -> None:
        seen: set[str] = set()
        for endpoint in endpoints:
            ip = _ip(endpoint.address)
            if ip is None or endpoint.address in seen:
                continue
            seen.add(endpoint.address)
            kind = A if ip.version == 4 else AAAA
            if rdtype not in (kind, ANY):
                continue
            rrset = response.find_rrset(response.answer, name, IN, kind, create=True)
            rrset.add(_address_rdata(ip), TTL_S)

    def _srv(self, response: dns.message.Message, name: dns.name.Name,
             endpoints: Sequence[Endpoint]) -> None:
        rrset = response.find_rrset(response.answer, name, IN, SRV, create=True)
        for endpoint in endpoints:
            ip = _ip(endpoint.address)
            target = _addr_name(ip) if ip else dns.name.from_text(endpoint.address)
            rrset.add(dns.rdtypes.IN.SRV.SRV(IN, SRV, 1, min(endpoint.weight, 65535),
                                              endpoint.port, target), TTL_S)
            if ip is not None:
                kind = A if ip.version == 4 else AAAA
                extra = response.find_rrset(response.additional, target, IN, kind,
                                            create=True)
                extra.add(_address_rdata(ip), TTL_S)

    def _addr(self, response: dns.message.Message, name: dns.name.Name, rdtype: int) -> None:
        label = name.relativize(ADDR).labels
        ip = None
        if len(label) == 1:
            with contextlib.suppress(ValueError):
                raw = bytes.fromhex(label[0].decode("ascii", "replace"))
                ip = ipaddress.ip_address(raw) if len(raw) in (4, 16) else None
        if ip is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return
        kind = A if ip.version == 4 else AAAA
        if rdtype in (kind, ANY):
            rrset = response.find_rrset(response.answer, name, IN, kind, create=True)
            rrset.add(_address_rdata(ip), TTL_S)

    def reply(self, data: bytes, max_size: int | None) -> bytes | None:
        """The wire answer to the wire query DATA (None: too broken to answer at all)."""
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:
            if len(data) < 12:
                return None  # not even a header: there is no id to answer to
            failed = dns.message.Message(id=struct.unpack("!H", data[:2])[0])
            failed.flags = dns.flags.QR
            failed.set_rcode(dns.rcode.FORMERR)
            return failed.to_wire()
        if query.flags & dns.flags.QR:
            return None  # an answer sent to us: replying could start a loop between servers
        response = self.answer(query)
        if max_size is None:
            return response.to_wire()
        limit = max(512, query.payload if query.edns >= 0 else 512)
        try:
            return response.to_wire(max_size=limit)
        except dns.exception.TooBig:
            response.flags |= dns.flags.TC  # the client asks again over TCP
            response.answer, response.additional = [], []
            return response.to_wire(max_size=limit)


def _service_name(labels: list[str]) -> tuple[str, str | None] | None:
    """(service, tag or None) for the labels left of service.mesh."""
    if len(labels) == 2 and labels[0].startswith("_") and labels[1] == "_tcp":
        return labels[0][1:], None
    if len(labels) == 1:
        return labels[0], None
    if len(labels) == 2:
        return labels[1], labels[0]
    return None


def _ip(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(address)
    except ValueError:
        return None


def _address_rdata(ip: ipaddress.IPv4Address | ipaddress.IPv6Address
                   ) -> dns.rdtypes.IN.A.A | dns.rdtypes.IN.AAAA.AAAA:
    if ip.version == 4:
        return dns.rdtypes.IN.A.A(IN, A, str(ip))
    return dns.rdtypes.IN.AAAA.AAAA(IN, AAAA, str(ip))


def _addr_name(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> dns.name.Name:
    return dns.name.Name((ip.packed.hex().encode(),)).concatenate(ADDR)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            out = self.resolver.reply(data, max_size=512)
        except Exception:  # one bad query must never stop the server
            log.exception("dns: query from %s failed", addr)
            return
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)


async def _tcp(resolver: Resolver, reader: asyncio.StreamReader,
               writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            async with asyncio.timeout(10):
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                data = await reader.readexactly(size)
            out = resolver.reply(data, max_size=None)
            if out is None:
                break
            writer.write(struct.pack("!H", len(out)) + out)
            await writer.drain()
    except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
        pass
    except Exception:
        log.exception("dns: tcp query failed")
    finally:
        writer.close()


class DnsServer:
    def __init__(self, source: DnsSource) -> None:
        self.resolver = Resolver(source)
        self.udp: asyncio.DatagramTransport | None = None
        self.tcp: asyncio.Server | None = None
        self.address = ""

    async def start(self, host: str, port: int) -> None:
        """UDP and TCP on host:port (port 0: the TCP port picked, UDP on the same)."""
        loop = asyncio.get_running_loop()
        self.tcp = await asyncio.start_server(
            lambda r, w: _tcp(self.resolver, r, w), host, port)
        bound = self.tcp.sockets[0].getsockname()
        try:
            self.udp, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self.resolver), local_addr=(host, bound[1]))
        except OSError:
            self.tcp.close()
            raise
        self.address = f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else \
            f"{bound[0]}:{bound[1]}"

    async def stop(self) -> None:
        if self.udp is not None:
            self.udp.close()
        if self.tcp is not None:
            self.tcp.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await self.tcp.wait_closed()
