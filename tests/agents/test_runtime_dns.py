"""The agent's DNS (agents.runtime.dns) against a real agent and dnspython's resolver."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import dns.asyncquery
import dns.asyncresolver
import dns.flags
import dns.message
import dns.rcode
import dns.resolver
import pytest
import yaml

from agents.runtime.config import parse_config
from tests.agents.backends import FakeControlPlane
from tests.agents.test_runtime_agent import eventually, make_config, running_agent

pytestmark = pytest.mark.timeout(60)


def endpoint(address: str, port: int, *, status: str = "passing", tags: list[str] | None = None,
             weight: int = 100) -> dict[str, Any]:
    return {"id": f"ep-{address}-{port}", "address": address, "port": port, "weight": weight,
            "zone": "zone-1", "status": status, "tags": tags or []}


def payments(*endpoints: dict[str, Any]) -> dict[str, Any]:
    return {"payments": {"protocol": "http", "policy": {"load_balancer": "round_robin"},
                         "endpoints": list(endpoints)}}


def dns_config(cp: FakeControlPlane, tmp_path: Path):
    base = make_config(cp.url, tmp_path)
    return parse_config({
        "control_plane": cp.url, "token": "enroll-secret", "node": "host-a", "zone": "zone-1",
        "data_dir": str(tmp_path), "admin": "127.0.0.1:0", "dns": "127.0.0.1:0",
        "upstreams": [{"service": u.service, "listen": "127.0.0.1:0"} for u in base.upstreams],
    })


def resolver_for(address: str, *, tcp: bool = False) -> dns.asyncresolver.Resolver:
    host, port = address.rsplit(":", 1)
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [host]
    resolver.port = int(port)
    resolver.cache = None
    return resolver


async def a_records(resolver: dns.asyncresolver.Resolver, name: str, *, tcp: bool = False
                    ) -> set[str]:
    try:
        answer = await resolver.resolve(name, "A", tcp=tcp)
    except dns.resolver.NoAnswer:
        return set()
    return {r.address for r in answer}


async def test_names_types_subsets_and_unknown_names(tmp_path: Path) -> None:
    cp = await FakeControlPlane().start()
    try:
        await cp.publish(payments(endpoint("127.0.0.1", 8081, tags=["v1"]),
                                  endpoint("127.0.0.2", 8082, tags=["v2"]),
                                  endpoint("::1", 8083, tags=["v2"])))
        async with running_agent(dns_config(cp, tmp_path)) as agent:
            await eventually(agent.ready)
            assert agent.dns is not None
            resolver = resolver_for(agent.dns.address)
            for tcp in (False, True):
                answer = await resolver.resolve("payments.service.mesh", "A", tcp=tcp)
                assert {r.address for r in answer} == {"127.0.0.1", "127.0.0.2"}
                assert answer.rrset is not None and answer.rrset.ttl == 5
            six = await resolver.resolve("payments.service.mesh", "AAAA")
            assert {r.address for r in six} == {"::1"}
            assert await a_records(resolver, "v2.payments.service.mesh") == {"127.0.0.2"}
            assert await a_records(resolver, "V1.Payments.Service.Mesh") == {"127.0.0.1"}

            for name in ("_payments._tcp.service.mesh", "payments.service.mesh"):
                srv = await resolver.resolve(name, "SRV")
                assert sorted(r.port for r in srv) == [8081, 8082, 8083]
                targets = {r.port: str(r.target) for r in srv}
                assert targets[8082] == "7f000002.addr.service.mesh."
                assert await a_records(resolver, targets[8082]) == {"127.0.0.2"}
            srv_v2 = await resolver.resolve("v2.payments.service.mesh", "SRV")
            assert sorted(r.port for r in srv_v2) == [8082, 8083]

            for unknown in ("orders.service.mesh", "a.b.payments.service.mesh"):
                with pytest.raises(dns.resolver.NXDOMAIN):
                    await resolver.resolve(unknown, "A")
            query = dns.message.make_query("example.com", "A")
            host, port = agent.dns.address.rsplit(":", 1)
            reply = await dns.asyncquery.udp(query, host, port=int(port), timeout=2)
            assert reply.rcode() == dns.rcode.REFUSED
            assert reply.flags & dns.flags.AA == 0
            assert (await dns.asyncquery.udp(dns.message.make_query(
                "payments.service.mesh", "A"), host, port=int(port), timeout=2)
            ).flags & dns.flags.AA
    finally:
        await cp.stop()


async def test_answers_follow_health_and_maintenance_within_a_second(tmp_path: Path) -> None:
    cp = await FakeControlPlane().start()
    try:
        await cp.publish(payments(endpoint("127.0.0.1", 8081), endpoint("127.0.0.2", 8082),
                                  endpoint("127.0.0.3", 8083)))
        async with running_agent(dns_config(cp, tmp_path)) as agent:
            await eventually(agent.ready)
            assert agent.dns is not None
            resolver = resolver_for(agent.dns.address)
            assert await a_records(resolver, "payments.service.mesh") == {
                "127.0.0.1", "127.0.0.2", "127.0.0.3"}
            answers: set[str] = set()

            async def now_answers() -> set[str]:
                nonlocal answers
                answers = await a_records(resolver, "payments.service.mesh")
                return answers

            async def within_a_second(expected: set[str]) -> None:
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 1.0
                while await now_answers() != expected:
                    assert loop.time() < deadline, answers
                    await asyncio.sleep(0.02)

            await cp.publish(payments(endpoint("127.0.0.1", 8081),
                                      endpoint("127.0.0.2", 8082, status="critical"),
                                      endpoint("127.0.0.3", 8083)))
            await within_a_second({"127.0.0.1", "127.0.0.3"})
            await cp.publish(payments(endpoint("127.0.0.1", 8081, status="maintenance"),
                                      endpoint("127.0.0.2", 8082),
                                      endpoint("127.0.0.3", 8083)))
            await within_a_second({"127.0.0.2", "127.0.0.3"})
            # Below the panic threshold every routable endpoint is used, as the proxy does
            # (but never one in maintenance).
            await cp.publish(payments(endpoint("127.0.0.1", 8081, status="maintenance"),
                                      endpoint("127.0.0.2", 8082, status="critical"),
                                      endpoint("127.0.0.3", 8083, status="critical")))
            await within_a_second({"127.0.0.2", "127.0.0.3"})
            # Served from the snapshot: the control plane going away changes nothing.
            await cp.stop()
            assert await now_answers() == {"127.0.0.2", "127.0.0.3"}
    finally:
        await cp.stop()


async def test_malformed_queries_get_formerr_and_the_server_keeps_answering(
        tmp_path: Path) -> None:
    cp = await FakeControlPlane().start()
    try:
        await cp.publish(payments(endpoint("127.0.0.1", 8081)))
        async with running_agent(dns_config(cp, tmp_path)) as agent:
            await eventually(agent.ready)
            assert agent.dns is not None
            host, port = agent.dns.address.rsplit(":", 1)
            loop = asyncio.get_running_loop()
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            try:
                good = dns.message.make_query("payments.service.mesh", "A").to_wire()
                bad = b"\x12\x34" + good[2:4] + b"\x00\x05" + good[6:]  # 5 questions, 1 there
                stray = dns.message.make_response(dns.message.make_query("x.service.mesh", "A"))
                stray.id = 0x5555
                probe = dns.message.make_query("payments.service.mesh", "A")
                probe.id = 0x7777
                for datagram in (b"\x00", bad, b"\xab\xcd" + b"\xff" * 40, stray.to_wire(),
                                 probe.to_wire()):
                    await loop.sock_sendto(sock, datagram, (host, int(port)))
                replies = {}
                while 0x7777 not in replies:
                    async with asyncio.timeout(2):
                        data = await loop.sock_recv(sock, 4096)
                    reply = dns.message.from_wire(data, question_only=True)
                    replies[reply.id] = reply.rcode()
            finally:
                sock.close()
            # The 1-byte datagram has no id to answer; a response (QR) sent to us is not
            # answered (no loops between servers); the good query after them all is.
            assert replies == {0x1234: dns.rcode.FORMERR, 0xABCD: dns.rcode.FORMERR,
                               0x7777: dns.rcode.NOERROR}
            # Over TCP, a garbage message then a good one on the same server.
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"\x00\x0e" + b"\x99\x99" + b"\xff" * 12)
            size = int.from_bytes(await reader.readexactly(2), "big")
            assert dns.message.from_wire(await reader.readexactly(size),
                                         question_only=True).rcode() == dns.rcode.FORMERR
            writer.close()
            resolver = resolver_for(agent.dns.address)
            assert await a_records(resolver, "payments.service.mesh") == {"127.0.0.1"}
    finally:
        await cp.stop()


def test_dns_setting_off_address_and_conflicts() -> None:
    base = {"control_plane": "http://127.0.0.1:8000", "token": "t", "node": "host-a",
            "data_dir": "/tmp/x"}
    default = parse_config(base)
    assert (default.dns, default.dns_explicit) == (("127.0.0.1", 8600), False)
    assert parse_config(yaml.safe_load("dns: off") | base).dns is None
    assert parse_config({**base, "dns": "off"}).dns is None
    chosen = parse_config({**base, "dns": "127.0.0.1:5353"})
    assert (chosen.dns, chosen.dns_explicit) == (("127.0.0.1", 5353), True)
    from agents.runtime.config import ConfigError

    with pytest.raises(ConfigError, match="dns"):
        parse_config({**base, "dns": "nonsense"})
    with pytest.raises(ConfigError, match="dns"):
        parse_config({**base, "dns": "127.0.0.1:9101",
                      "upstreams": [{"service": "payments", "listen": "127.0.0.1:9101"}]})


async def test_a_taken_default_address_only_disables_dns(tmp_path: Path) -> None:
    cp = await FakeControlPlane().start()
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        from dataclasses import replace

        config = replace(make_config(cp.url, tmp_path), dns=("127.0.0.1", port))
        async with running_agent(config) as agent:
            assert agent.dns is None and str(port) in agent.dns_error
            assert agent.stats()["dns"]["error"] == agent.dns_error
        with pytest.raises(OSError):
            async with running_agent(replace(config, dns_explicit=True)):
                pass
    finally:
        holder.close()
        await cp.stop()


def test_weighted_shuffle_puts_heavier_endpoints_first_more_often_and_skips_weight_zero(
) -> None:
    import random

    from agents.runtime.dns import weighted_shuffle
    from agents.runtime.endpoint import Endpoint

    heavy, light, off = (Endpoint("h", "10.0.0.1", 80, weight=300),
                         Endpoint("l", "10.0.0.2", 80, weight=100),
                         Endpoint("o", "10.0.0.3", 80, weight=0))
    rng = random.Random(7)
    firsts = [weighted_shuffle([light, heavy, off], rng)[0] for _ in range(4000)]
    assert off not in firsts
    share = firsts.count(heavy) / len(firsts)
    assert 0.70 < share < 0.80  # 300 / (300 + 100); seeded, so this does not flake
    assert sorted(e.id for e in weighted_shuffle([light, heavy, off], rng)) == ["h", "l"]


async def test_a_large_answer_is_truncated_over_udp_and_whole_over_tcp(tmp_path: Path) -> None:
    cp = await FakeControlPlane().start()
    try:
        many = [endpoint(f"10.0.{i // 200}.{i % 200 + 1}", 8000 + i) for i in range(80)]
        await cp.publish(payments(*many))
        async with running_agent(dns_config(cp, tmp_path)) as agent:
            await eventually(agent.ready)
            assert agent.dns is not None
            host, port = agent.dns.address.rsplit(":", 1)
            query = dns.message.make_query("payments.service.mesh", "A")
            udp = await dns.asyncquery.udp(query, host, port=int(port), timeout=2)
            assert udp.flags & dns.flags.TC and not udp.answer
            tcp = await dns.asyncquery.tcp(query, host, port=int(port), timeout=2)
            assert len(tcp.answer[0]) == 80
            # The resolver does what clients do: retries a truncated answer over TCP.
            assert len(await a_records(resolver_for(agent.dns.address),
                                       "payments.service.mesh")) == 80
    finally:
        await cp.stop()


async def test_a_named_subset_of_the_routes_resolves_by_its_selector(tmp_path: Path) -> None:
    # `canary` is a subset the service's routes define by metadata (no instance
    # carries a `canary` tag); `v1` is a plain tag.
    canary = {**endpoint("127.0.0.3", 8083, tags=["v1"]), "metadata": {"track": "canary"}}
    upstreams = payments(endpoint("127.0.0.1", 8081, tags=["v1"]), canary)
    upstreams["payments"]["subsets"] = {"canary": {"tags": [], "metadata": {"track": "canary"}}}
    cp = await FakeControlPlane().start()
    try:
        await cp.publish(upstreams)
        async with running_agent(dns_config(cp, tmp_path)) as agent:
            await eventually(agent.ready)
            assert agent.dns is not None
            resolver = resolver_for(agent.dns.address)
            assert await a_records(resolver, "canary.payments.service.mesh") == {"127.0.0.3"}
            assert await a_records(resolver, "v1.payments.service.mesh") == {
                "127.0.0.1", "127.0.0.3"}
            with pytest.raises(dns.resolver.NoAnswer):
                await resolver.resolve("v9.payments.service.mesh", "A")
    finally:
        await cp.stop()
