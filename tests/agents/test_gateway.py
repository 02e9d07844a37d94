"""The gateway listener against real backends on loopback (issue 12)."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from agents.runtime.snapshot import parse_snapshot
from tests.agents.backends import Backend, HttpClient, HttpServer, Request, free_port, head
from tests.agents.gateway_helpers import (
    call,
    client_tls,
    consumer,
    entry,
    make_cert,
    request_bytes,
    route,
    running_gateway,
    snapshot,
)

pytestmark = pytest.mark.timeout(60)

HS_SECRET = "a-shared-secret-of-enough-length-32+"


@pytest.fixture
async def backends() -> Any:
    started = {name: await Backend(name).start() for name in "abcdefg"}
    yield started
    for backend in started.values():
        await backend.stop()


def upstreams(backends: dict[str, Backend]) -> dict[str, Any]:
    return {f"svc-{name}": entry(b) for name, b in backends.items()}


async def test_route_precedence_host_then_path(backends: dict[str, Backend]) -> None:
    section = {"routes": [
        route("any-host", "svc-c", path={"prefix": "/"}),
        route("wild", "svc-b", hosts=["*.example.com"], path={"prefix": "/"}),
        route("wild-deeper", "svc-g", hosts=["*.eu.example.com"], path={"prefix": "/"}),
        route("exact-host", "svc-a", hosts=["api.example.com"], path={"prefix": "/"}),
        route("longer", "svc-d", hosts=["api.example.com"], path={"prefix": "/orders/long"}),
        route("exact-path", "svc-e", hosts=["api.example.com"], path={"exact": "/orders"}),
        route("regex", "svc-f", hosts=["api.example.com", "re.example.net"],
              path={"regex": r"/r/\d+"}),
        route("re-exact", "svc-e", hosts=["re.example.net"], path={"exact": "/r/1"}),
        route("post-only", "svc-f", hosts=["api.example.com"], path={"prefix": "/p"},
              methods=["POST"]),
    ]}
    async with running_gateway(section, upstreams(backends)) as (_, port):
        async def backend_of(host: str, path: str, method: str = "GET") -> str:
            answer = await call(port, method, path, host=host)
            assert answer.status == 200, (host, path, answer.status)
            return str(answer.header("x-backend"))

        assert await backend_of("api.example.com", "/x") == "a"
        assert await backend_of("API.example.com:8080", "/x") == "a"  # case and port ignored
        assert await backend_of("shop.example.com", "/x") == "b"
        assert await backend_of("x.eu.example.com", "/x") == "g"  # the longer wildcard wins
        assert await backend_of("example.com", "/x") == "c"  # *.example.com: not the apex
        assert await backend_of("other.org", "/x") == "c"
        assert await backend_of("api.example.com", "/orders/long/1") == "d"
        assert await backend_of("api.example.com", "/orders/lon") == "a"
        assert await backend_of("api.example.com", "/orders") == "e"
        assert await backend_of("api.example.com", "/r/12") == "a"  # prefixes before regexes
        assert await backend_of("re.example.net", "/r/12") == "f"
        assert await backend_of("re.example.net", "/r/1") == "e"  # exact paths first
        # fullmatch only: falls through to the any-host route
        assert await backend_of("re.example.net", "/r/12x") == "c"
        assert await backend_of("api.example.com", "/p/1", "POST") == "f"
        assert await backend_of("api.example.com", "/p/1", "GET") == "a"  # method mismatch


async def test_no_route_is_404(backends: dict[str, Backend]) -> None:
    section = {"routes": [route("only", "svc-a", hosts=["api.example.com"],
                                path={"prefix": "/orders"})]}
    async with running_gateway(section, upstreams(backends)) as (gateway, port):
        async with HttpClient(port) as client:
            for host, path in (("api.example.com", "/users"), ("other.com", "/orders")):
                await client.send(request_bytes("GET", path, host))
                answer = await client.read_response()
                assert answer.status == 404
                assert answer.header("x-mesh-error") == "no-route"
            # keep-alive survives a 404 (the request had no body)
            await client.send(request_bytes("GET", "/orders/1"))
            assert (await client.read_response()).status == 200
        assert gateway.metrics.no_route_total == 2
    assert not backends["a"].requests[:-1]


async def test_strip_prefix_request_id_and_forwarded_headers(
        backends: dict[str, Backend]) -> None:
    section = {"routes": [route("orders", "svc-a", path={"prefix": "/orders"},
                                strip_prefix=True)]}
    async with running_gateway(section, upstreams(backends)) as (_, port):
        answer = await call(port, "GET", "/orders/1?x=2", headers=[("X-Request-Id", "abc-123")])
        assert answer.status == 200 and answer.json()["path"] == "/1"
        got = backends["a"].requests[-1]
        assert got.target == "/1?x=2"
        assert got.header("x-request-id") == "abc-123"
        assert answer.header("x-request-id") == "abc-123"
        assert got.header("x-forwarded-host") == "api.example.com"
        assert got.header("x-forwarded-proto") == "http"
        await call(port, "GET", "/orders")
        assert backends["a"].requests[-1].target == "/"
        bad = await call(port, "GET", "/orders/2", headers=[("X-Request-Id", "no spaces\tallowed")])
        rid = backends["a"].requests[-1].header("x-request-id")
        assert rid and rid != "no spaces\tallowed" and bad.header("x-request-id") == rid
        dots = await call(port, "GET", "/orders/../admin")
        assert dots.status == 400


async def test_xff_ignored_from_untrusted_peer(backends: dict[str, Backend]) -> None:
    section = {"routes": [route("r", "svc-a", path={"prefix": "/"})]}
    spoof = [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https"),
             ("X-Forwarded-Host", "evil.com")]
    async with running_gateway(section, upstreams(backends),
                               trusted_proxies=()) as (_, port):
        await call(port, "GET", "/", headers=spoof)
        got = backends["a"].requests[-1]
        assert got.header("x-forwarded-for") == "127.0.0.1"
        assert got.header("x-forwarded-proto") == "http"
        assert got.header("x-forwarded-host") == "api.example.com"


async def test_xff_honoured_from_trusted_peer_rightmost_untrusted(
        backends: dict[str, Backend]) -> None:
    import ipaddress

    # Per-IP buckets (a consumer-scoped limit without auth) show which client IP was taken.
    limit = {"scope": "consumer", "mode": "local", "requests": 1, "per": "minute", "burst": 1}
    section = {"routes": [route("r", "svc-a", path={"prefix": "/"}, rate_limits=[limit])]}
    trusted = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.0.0.0/8"))
    async with running_gateway(section, upstreams(backends),
                               trusted_proxies=trusted) as (gateway, port):
        first = await call(port, "GET", "/", headers=[("X-Forwarded-For", "1.1.1.1, 10.0.0.5")])
        assert first.status == 200
        got = backends["a"].requests[-1]
        assert got.header("x-forwarded-for") == "1.1.1.1, 10.0.0.5, 127.0.0.1"
        # the same client behind another trusted hop: the same bucket, refused
        again = await call(port, "GET", "/", headers=[("X-Forwarded-For", "1.1.1.1, 10.0.0.9")])
        assert again.status == 429
        # the left hop is not the client when the one after it is untrusted
        other = await call(port, "GET", "/", headers=[("X-Forwarded-For", "1.1.1.1, 2.2.2.2")])
        assert other.status == 200
        assert {k[2] for k in gateway.buckets} == {"ip:1.1.1.1", "ip:2.2.2.2"}


async def test_key_auth(backends: dict[str, Backend]) -> None:
    auth = {"type": "key", "key": {"header": "apikey", "query": "apikey"},
            "consumers": ["alice"]}
    section = {"routes": [route("r", "svc-a", path={"prefix": "/"}, auth=auth)],
               "consumers": [consumer("alice", "alice-key-1"), consumer("bob", "bob-key-1")]}
    async with running_gateway(section, upstreams(backends)) as (_, port):
        ok = await call(port, "GET", "/", headers=[("apikey", "alice-key-1"),
                                                   ("X-Mesh-Consumer", "root")])
        assert ok.status == 200
        assert backends["a"].requests[-1].header("x-mesh-consumer") == "alice"
        by_query = await call(port, "GET", "/x?apikey=alice-key-1")
        assert by_query.status == 200
        missing = await call(port, "GET", "/", headers=[("X-Mesh-Consumer", "alice")])
        assert missing.status == 401
        assert missing.header("www-authenticate") == 'Key realm="meshconsole"'
        wrong = await call(port, "GET", "/", headers=[("apikey", "alice-key-2")])
        assert wrong.status == 401 and wrong.header("www-authenticate")
        wrong_query = await call(port, "GET", "/?apikey=nope")
        assert wrong_query.status == 401
        bob = await call(port, "GET", "/", headers=[("apikey", "bob-key-1")])
        assert bob.status == 403
        assert bob.header("x-mesh-error") == "consumer-not-allowed"
    assert len(backends["a"].requests) == 2


def _rsa_jwk(kid: str) -> tuple[rsa.RSAPrivateKey, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    return key, {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}


def _ec_jwk(kid: str) -> tuple[ec.EllipticCurvePrivateKey, dict[str, Any]]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    return key, {**jwk, "kid": kid, "use": "sig", "alg": "ES256"}


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "alice@corp", "iss": "https://idp", "aud": "orders-api", "iat": now,
            "exp": now + 300, **over}


async def test_jwt_auth(backends: dict[str, Backend]) -> None:
    rsa_key, rsa_jwk = _rsa_jwk("r1")
    ec_key, ec_jwk = _ec_jwk("e1")
    jwks_server = HttpServer(_serve_json({"keys": [ec_jwk]}))
    await jwks_server.start()
    common = {"issuer": "https://idp", "audience": "orders-api", "leeway_s": 5}
    providers = {
        "hs": {"algorithms": ["HS256"], "secret": HS_SECRET, **common},
        "rs": {"algorithms": ["RS256"], "jwks": {"keys": [rsa_jwk]}, **common},
        "es": {"algorithms": ["ES256"],
               "jwks_url": f"http://127.0.0.1:{jwks_server.port}/jwks.json", **common},
    }
    section = {
        "routes": [route(n, "svc-a", path={"prefix": f"/{n}"},
                         auth={"type": "jwt", "jwt": {"provider": n}}) for n in providers],
        "consumers": [consumer("alice", subjects=["alice@corp"])],
        "jwt_providers": providers,
    }
    try:
        async with running_gateway(section, upstreams(backends)) as (_, port):
            async def status(path: str, token: str | None) -> tuple[int, str | None]:
                headers = [("Authorization", f"Bearer {token}")] if token is not None else []
                answer = await call(port, "GET", path, headers=headers)
                return answer.status, answer.header("www-authenticate")

            hs = jwt.encode(_claims(), HS_SECRET, algorithm="HS256")
            assert (await status("/hs", hs))[0] == 200
            assert backends["a"].requests[-1].header("x-mesh-consumer") == "alice"
            rs = jwt.encode(_claims(), rsa_key, algorithm="RS256", headers={"kid": "r1"})
            assert (await status("/rs", rs))[0] == 200
            es = jwt.encode(_claims(), ec_key, algorithm="ES256", headers={"kid": "e1"})
            assert (await status("/es", es))[0] == 200  # JWKS fetched from the URL

            code, challenge = await status("/hs", None)
            assert code == 401 and challenge and challenge.startswith("Bearer")
            bad = [
                jwt.encode(_claims(exp=int(time.time()) - 60), HS_SECRET, algorithm="HS256"),
                jwt.encode(_claims(nbf=int(time.time()) + 60), HS_SECRET, algorithm="HS256"),
                jwt.encode(_claims(aud="other-api"), HS_SECRET, algorithm="HS256"),
                jwt.encode(_claims(iss="https://evil"), HS_SECRET, algorithm="HS256"),
                jwt.encode(_claims(), "another-secret-of-enough-length-32+", algorithm="HS256"),
                "not.a.token",
            ]
            for token in bad:
                code, challenge = await status("/hs", token)
                assert code == 401, token
                assert challenge == 'Bearer error="invalid_token"'
            # within the leeway: accepted
            inside = jwt.encode(_claims(exp=int(time.time()) - 2), HS_SECRET, algorithm="HS256")
            assert (await status("/hs", inside))[0] == 200

            # alg none, on every provider
            unsigned = jwt.encode(_claims(), None, algorithm="none")  # type: ignore[arg-type]
            for path in ("/hs", "/rs", "/es"):
                assert (await status(path, unsigned))[0] == 401
            # HS/RS confusion: HS256 signed with the RSA public key (PEM) as the secret
            pem = rsa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            forged = _hs256_raw(_claims(), pem, kid="r1")
            assert (await status("/rs", forged))[0] == 401
            # an RS256 token on the HS provider
            assert (await status("/hs", rs))[0] == 401
            # a valid signature for a subject that is no consumer
            stranger = jwt.encode(_claims(sub="mallory"), HS_SECRET, algorithm="HS256")
            assert (await status("/hs", stranger))[0] == 403
    finally:
        await jwks_server.stop()


def _hs256_raw(claims: dict[str, Any], secret: bytes, kid: str) -> str:
    """An HS256 token signed by hand (PyJWT itself refuses a PEM as an HMAC secret)."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode())
    payload = b64(json.dumps(claims).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def _serve_json(data: Any) -> Any:
    async def handler(req: Request, writer: asyncio.StreamWriter) -> bool:
        body = json.dumps(data).encode()
        writer.write(head(200, [("Content-Type", "application/json"),
                                ("Content-Length", str(len(body)))]) + body)
        await writer.drain()
        return True
    return handler


async def test_local_rate_limit_429_with_headers(backends: dict[str, Backend]) -> None:
    limit = {"scope": "route", "mode": "local", "requests": 3, "per": "minute", "burst": 3}
    section = {"routes": [route("r", "svc-a", path={"prefix": "/"}, rate_limits=[limit])]}
    async with running_gateway(section, upstreams(backends)) as (_, port):
        async with HttpClient(port) as client:
            remaining = []
            for _ in range(3):
                await client.send(request_bytes("GET", "/"))
                answer = await client.read_response()
                assert answer.status == 200
                assert answer.header("ratelimit-limit") == "3"
                remaining.append(answer.header("ratelimit-remaining"))
            assert remaining == ["2", "1", "0"]
            await client.send(request_bytes("GET", "/"))
            refused = await client.read_response()
        assert refused.status == 429
        assert int(refused.header("retry-after") or 0) >= 1
        assert refused.header("ratelimit-remaining") == "0"
        assert int(refused.header("ratelimit-reset") or 0) >= 1
    assert len(backends["a"].requests) == 3


async def test_consumer_scoped_limit_is_per_consumer(backends: dict[str, Backend]) -> None:
    limit = {"scope": "consumer", "mode": "local", "requests": 1, "per": "minute", "burst": 1}
    section = {"routes": [route("r", "svc-a", path={"prefix": "/"}, rate_limits=[limit],
                                auth={"type": "key", "key": {"header": "apikey"}})],
               "consumers": [consumer("alice", "ka-123"), consumer("bob", "kb-123")]}
    async with running_gateway(section, upstreams(backends)) as (_, port):
        assert (await call(port, "GET", "/", headers=[("apikey", "ka-123")])).status == 200
        assert (await call(port, "GET", "/", headers=[("apikey", "ka-123")])).status == 429
        assert (await call(port, "GET", "/", headers=[("apikey", "kb-123")])).status == 200


REDIS_DB13 = "redis://127.0.0.1:6379/13"


def _redis_up() -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not _redis_up(), reason="no Redis on 127.0.0.1:6379")
async def test_global_limit_in_redis(backends: dict[str, Backend]) -> None:
    import uuid

    limit = {"scope": "route", "mode": "global", "requests": 3, "per": "minute", "burst": 3}
    name = "g" + uuid.uuid4().hex[:12]  # a fresh bucket in db 13
    section = {"routes": [route(name, "svc-a", path={"prefix": "/"}, rate_limits=[limit])]}
    async with running_gateway(section, upstreams(backends), redis=REDIS_DB13) as (gw, port):
        codes = [(await call(port, "GET", "/")).status for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        assert gw.limiter.errors_total == 0


@pytest.mark.parametrize("mode,expected", [("open", 200), ("closed", 429)])
async def test_global_limit_when_redis_is_down(backends: dict[str, Backend], mode: str,
                                               expected: int) -> None:
    dead = await free_port()
    limit = {"scope": "route", "mode": "global", "requests": 100, "per": "second", "burst": 10}
    section = {"routes": [route("r", "svc-a", path={"prefix": "/"}, rate_limits=[limit])]}
    async with running_gateway(section, upstreams(backends), redis=f"redis://127.0.0.1:{dead}/13",
                               on_redis_error=mode) as (gw, port):
        started = time.monotonic()
        codes = [(await call(port, "GET", "/")).status for _ in range(5)]
        assert time.monotonic() - started < 2.0  # bounded by the timeout, then skipped
        assert codes == [expected] * 5
        assert gw.limiter.errors_total >= 1


async def test_body_limit_413(backends: dict[str, Backend]) -> None:
    section = {"routes": [route("small", "svc-a", path={"prefix": "/small"},
                                max_body_bytes=10),
                          route("default", "svc-a", path={"prefix": "/"})]}
    async with running_gateway(section, upstreams(backends), max_body_bytes=100) as (_, port):
        assert (await call(port, "POST", "/small", body=b"x" * 10)).status == 200
        assert (await call(port, "POST", "/small", body=b"x" * 11)).status == 413
        assert (await call(port, "POST", "/big", body=b"x" * 100)).status == 200
        assert (await call(port, "POST", "/big", body=b"x" * 101)).status == 413
        async with HttpClient(port) as client:  # chunked: refused while streaming
            await client.send(b"POST /small HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                              b"\r\n\r\n8\r\n01234567\r\n")
            await asyncio.sleep(0.05)
            await client.send(b"8\r\n01234567\r\n0\r\n\r\n")
            answer = await client.read_response()
        assert answer.status == 413
    sizes = [r.body_len for r in backends["a"].requests]
    assert 11 not in sizes and 101 not in sizes and 16 not in sizes


async def test_cors(backends: dict[str, Backend]) -> None:
    cors = {"origins": ["https://app.example.com"], "methods": ["GET", "POST"],
            "headers": ["content-type", "apikey"], "credentials": True, "max_age_s": 600}
    section = {"routes": [route("r", "svc-a", path={"prefix": "/"}, cors=cors,
                                auth={"type": "key", "key": {"header": "apikey"}})],
               "consumers": [consumer("alice", "ka-123")]}
    async with running_gateway(section, upstreams(backends)) as (_, port):
        pre = await call(port, "OPTIONS", "/x", headers=[
            ("Origin", "https://app.example.com"), ("Access-Control-Request-Method", "POST")])
        assert pre.status == 204
        assert pre.header("access-control-allow-origin") == "https://app.example.com"
        assert pre.header("access-control-allow-methods") == "GET, POST"
        assert pre.header("access-control-allow-headers") == "content-type, apikey"
        assert pre.header("access-control-max-age") == "600"
        assert pre.header("access-control-allow-credentials") == "true"
        denied = await call(port, "OPTIONS", "/x", headers=[
            ("Origin", "https://evil.example.com"), ("Access-Control-Request-Method", "POST")])
        assert denied.header("access-control-allow-origin") is None
        simple = await call(port, "GET", "/x", headers=[("Origin", "https://app.example.com"),
                                                        ("apikey", "ka-123")])
        assert simple.status == 200
        assert simple.header("access-control-allow-origin") == "https://app.example.com"
        other = await call(port, "GET", "/x", headers=[("Origin", "https://evil.example.com"),
                                                       ("apikey", "ka-123")])
        assert other.status == 200 and other.header("access-control-allow-origin") is None
    assert all(r.method != "OPTIONS" for r in backends["a"].requests)


async def test_tls_termination_with_sni(backends: dict[str, Backend], tmp_path: Path) -> None:
    certs = [make_cert(tmp_path, "a.example.com"), make_cert(tmp_path, "b.example.com")]
    section = {"routes": [route("r", "svc-a", path={"prefix": "/"})]}
    async with running_gateway(section, upstreams(backends), certificates=certs) as (_, port):
        for name in ("a.example.com", "b.example.com", "unknown.example.com"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_tls(),
                                                           server_hostname=name)
            ssl_object = writer.get_extra_info("ssl_object")
            der = ssl_object.getpeercert(binary_form=True)
            from cryptography import x509

            cert = x509.load_der_x509_certificate(der)
            san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
            names = san.value.get_values_for_type(x509.DNSName)
            assert names == ["b.example.com" if name == "b.example.com" else "a.example.com"]
            writer.write(request_bytes("GET", "/hello", host=name))
            data = await asyncio.wait_for(reader.read(65536), 5)
            assert data.startswith(b"HTTP/1.1 200")
            writer.close()
        assert backends["a"].requests[-1].header("x-forwarded-proto") == "https"
        with pytest.raises((ssl.SSLError, ConnectionError)):  # plain HTTP on a TLS listener
            async with HttpClient(port) as client:
                await client.send(request_bytes("GET", "/"))
                await asyncio.wait_for(client.read_response(), 5)


SMUGGLING = [
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nabcd",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\rHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
]


@pytest.mark.parametrize("raw", SMUGGLING, ids=["cl-te", "dup-cl", "bad-te", "te-not-last",
                                                "bare-cr-line", "bare-cr-value", "dup-host"])
async def test_smuggling_refused(backends: dict[str, Backend], raw: bytes) -> None:
    from tests.agents.backends import raw_exchange

    section = {"routes": [route("r", "svc-a", path={"prefix": "/"})]}
    async with running_gateway(section, upstreams(backends)) as (_, port):
        out = await raw_exchange(port, raw, timeout=2.0)
    assert out.startswith(b"HTTP/1.1 400"), out[:100]
    assert backends["a"].requests == []


async def test_refused_section_keeps_the_last_table(backends: dict[str, Backend]) -> None:
    section = {"routes": [route("r", "svc-a", path={"prefix": "/"})]}
    async with running_gateway(section, upstreams(backends)) as (gateway, port):
        bad = snapshot({"routes": [route("r", "svc-a", path={"prefix": "no-slash"})]},
                       upstreams(backends), revision=2)
        snap = parse_snapshot(bad)
        error = gateway.offer(snap)
        assert error and "gateway.routes[0].path.prefix" in error
        assert snap.raw["gateway"]["routes"][0]["path"] == {"prefix": "/"}  # what is persisted
        assert (await call(port, "GET", "/x")).status == 200
        for broken in ({"routes": "x"}, {"routes": [route("r", "svc-a", auth={"type": "jwt"})]},
                       {"jwt_providers": {"p": {"algorithms": ["none"]}}},
                       {"jwt_providers": {"p": {"algorithms": ["HS256", "RS256"],
                                                "secret": HS_SECRET}}},
                       {"consumers": [{"name": "a", "key_hashes": ["md5:x"]}]},
                       {"routes": [route("r", "svc-a", path={"regex": "("})]}):
            assert gateway.offer(parse_snapshot(snapshot(broken, upstreams(backends))))


async def test_metrics_windows(backends: dict[str, Backend]) -> None:
    section = {"routes": [route("r", "svc-a", path={"prefix": "/"},
                                auth={"type": "key", "key": {"header": "apikey"}})],
               "consumers": [consumer("alice", "ka-123")]}
    async with running_gateway(section, upstreams(backends)) as (gateway, port):
        for _ in range(3):
            await call(port, "GET", "/", headers=[("apikey", "ka-123")])
        await call(port, "GET", "/?status=503", headers=[("apikey", "ka-123")])
        await call(port, "GET", "/")
        windows = {(w["route"], w["consumer"]): w for w in gateway.metrics.drain()}
    alice = windows[("r", "alice")]
    assert alice["gateway"] is True and alice["source"] == "edge"
    assert alice["destination"] == "svc-a" and alice["subset"] == ""
    assert alice["requests"] == 4 and alice["errors"] == 1
    assert alice["statuses"] == {"2xx": 3, "3xx": 0, "4xx": 0, "5xx": 1}
    assert windows[("r", "")]["statuses"]["4xx"] == 1


async def test_prometheus_lines(backends: dict[str, Backend]) -> None:
    from agents.runtime.gateway.metrics import render_gateway

    section = {"routes": [route("r", "svc-a", path={"prefix": "/"})]}
    async with running_gateway(section, upstreams(backends)) as (gateway, port):
        await call(port, "GET", "/")
        await call(port, "GET", "/?status=404")
        text = render_gateway(gateway.metrics)
    assert ('meshagent_gateway_requests_total{gateway="edge",service="svc-a",route="r",'
            'consumer="",status="2xx"} 1') in text
    assert 'consumer="",status="4xx"} 1' in text


async def test_route_to_a_subset_and_to_a_service_without_endpoints(
        backends: dict[str, Backend]) -> None:
    a, b = backends["a"], backends["b"]
    orders = entry(a, b)
    orders["endpoints"][0]["tags"] = ["v1"]
    orders["endpoints"][1]["tags"] = ["v2"]
    orders["endpoints"][1]["metadata"] = {"track": "canary"}
    orders["subsets"] = {"v1": {"tags": ["v1"], "metadata": {}},
                         "v2": {"tags": ["v2"], "metadata": {"track": "canary"}}}
    section = {"routes": [route("canary", "orders", path={"prefix": "/canary"}, subset="v2"),
                          route("stable", "orders", path={"prefix": "/stable"}, subset="v1"),
                          route("ghost", "ghost", path={"prefix": "/ghost"})]}
    async with running_gateway(section, {"orders": orders}) as (_, port):
        assert {(await call(port, "GET", "/canary")).header("x-backend")
                for _ in range(4)} == {"b"}
        assert {(await call(port, "GET", "/stable")).header("x-backend")
                for _ in range(4)} == {"a"}
        ghost = await call(port, "GET", "/ghost")
        assert ghost.status == 503 and ghost.header("x-mesh-error")


async def test_a_subset_of_a_failed_over_service_is_every_endpoint_of_the_target(
        backends: dict[str, Backend]) -> None:
    """As the mesh's splits (splits.build_routes): the failover target's instances need
    not carry the service's subset labels; the whole service moved, so does each subset."""
    a, b = backends["a"], backends["b"]
    orders = entry(a, b)  # the failover target's endpoints: no v2 tag, no metadata
    orders["subsets"] = {"v2": {"tags": ["v2"], "metadata": {"track": "canary"}}}
    orders["failover"] = {"active_target": "orders-dr", "reason": "no healthy instance"}
    section = {"routes": [route("canary", "orders", path={"prefix": "/"}, subset="v2")]}
    async with running_gateway(section, {"orders": orders}) as (_, port):
        answers = [await call(port, "GET", "/") for _ in range(6)]
    assert {r.status for r in answers} == {200}
    assert {r.header("x-backend") for r in answers} == {"a", "b"}


async def test_route_timeout_replaces_the_policy_timeout(backends: dict[str, Backend]) -> None:
    section = {"routes": [route("quick", "svc-a", path={"prefix": "/slow"}, timeout_ms=200),
                          route("patient", "svc-a", path={"prefix": "/"})]}
    async with running_gateway(section, upstreams(backends)) as (_, port):
        started = time.monotonic()
        answer = await call(port, "GET", "/slow?ms=1500")
        assert answer.status == 504 and time.monotonic() - started < 1.0
        assert (await call(port, "GET", "/x/slow?ms=300")).status == 200


async def test_jwks_url_refreshed_when_a_token_names_a_new_key(
        backends: dict[str, Backend], monkeypatch: pytest.MonkeyPatch) -> None:
    from agents.runtime.gateway import auth as gateway_auth

    monkeypatch.setattr(gateway_auth, "UNKNOWN_KID_REFRESH_S", 0.0)
    old_key, old_jwk = _ec_jwk("old")
    new_key, new_jwk = _ec_jwk("new")
    served = {"keys": [old_jwk]}
    jwks_server = HttpServer(_serve_json(served))
    await jwks_server.start()
    provider = {"algorithms": ["ES256"], "issuer": "https://idp", "audience": "orders-api",
                "jwks_url": f"http://127.0.0.1:{jwks_server.port}/jwks"}
    section = {"routes": [route("r", "svc-a", path={"prefix": "/"},
                                auth={"type": "jwt", "jwt": {"provider": "idp"}})],
               "consumers": [consumer("alice", subjects=["alice@corp"])],
               "jwt_providers": {"idp": provider}}
    try:
        async with running_gateway(section, upstreams(backends)) as (_, port):
            def bearer(key: Any, kid: str) -> list[tuple[str, str]]:
                token = jwt.encode(_claims(), key, algorithm="ES256", headers={"kid": kid})
                return [("Authorization", f"Bearer {token}")]

            assert (await call(port, "GET", "/", headers=bearer(old_key, "old"))).status == 200
            served["keys"] = [new_jwk]  # the IdP rotates
            assert (await call(port, "GET", "/", headers=bearer(new_key, "new"))).status == 200
            unknown_key, _ = _ec_jwk("unknown")
            assert (await call(port, "GET", "/",
                               headers=bearer(unknown_key, "unknown"))).status == 401
    finally:
        await jwks_server.stop()
