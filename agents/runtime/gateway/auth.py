"""Consumer auth at the gateway: API keys and JWT (PyJWT; no hand-written JOSE).

- Keys: the control plane stores `sha256:<hex>` of each key; the gateway hashes
  the presented key, finds the consumer by that digest and confirms it with
  hmac.compare_digest.
- JWT: the algorithms come from the provider, never from the token's header
  (PyJWT refuses a header alg outside them, `none` included); a provider is
  either HS* (its secret) or public-key (its JWKS), never both, so a token
  signed HS256 with the RSA public key as the secret fails. iss/aud/exp/nbf
  are checked with the provider's leeway. A JWKS URL is fetched off the event
  loop (a thread, bounded by a timeout), cached, and refreshed every
  `gateway.jwks_refresh` and (at most every 10s) when a token names an
  unknown key id.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import urllib.request
from typing import Any

import jwt

from agents.runtime.gateway.table import HS_ALGORITHMS, Consumer, Provider

log = logging.getLogger("meshagent.gateway")

FETCH_TIMEOUT_S = 5.0
MAX_JWKS_BYTES = 1024 * 1024
UNKNOWN_KID_REFRESH_S = 10.0
MAX_TOKEN_BYTES = 16 * 1024
PENDING = "pending"
_BACKGROUND: set[asyncio.Task[None]] = set()


def jwk_error(entry: Any) -> str | None:
    """Why ENTRY is not a key a verifier can use (None if it is). The agent skips such a
    key of a JWKS with a warning; the control plane refuses it in an inline JWKS
    (gateway/api/serializers.py), so a provider never stores a key no token can match."""
    try:
        jwt.PyJWK.from_dict(entry)
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
        return str(exc) or type(exc).__name__
    return None


class AuthFailure(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


# A report's `gateway.keys_used` (the keys that authenticated requests since the last
# report, by digest): at most vocabulary.MAX_KEYS_USED (the agent
# reads it without importing gateway mode); the control plane's serializer imports both.
KEY_DIGEST_RE = r"^sha256:[0-9a-f]{64}$"


def key_digest(key: str | bytes) -> str:
    raw = key.encode() if isinstance(key, str) else key
    return "sha256:" + hashlib.sha256(raw).hexdigest()


class Consumers:
    """The consumers of a table; USED collects the raw digest of every key that
    authenticated (reported as key use: the control plane's ConsumerKey.last_used_at)."""

    def __init__(self, consumers: tuple[Consumer, ...], used: set[bytes] | None = None) -> None:
        self.used: set[bytes] = used if used is not None else set()
        # raw sha256 digest -> (the stored digest, consumer): hashed once per request, no hex
        self.by_hash: dict[bytes, tuple[bytes, str]] = {}
        self.by_subject: dict[str, str] = {}
        for consumer in consumers:
            for digest in consumer.key_hashes:
                raw = bytes.fromhex(digest.removeprefix("sha256:"))
                self.by_hash[raw] = (raw, consumer.name)
            for subject in consumer.jwt_subjects:
                self.by_subject[subject] = consumer.name

    def by_key(self, key: bytes) -> str | None:
        digest = hashlib.sha256(key).digest()
        found = self.by_hash.get(digest)
        if found is None:
            return None
        stored, name = found  # found by the digest; what decides is constant-time
        if not hmac.compare_digest(stored, digest):
            return None
        self.used.add(stored)
        return name


class JwtVerifier:
    """One provider's keys and checks."""

    def __init__(self, provider: Provider, refresh_s: float) -> None:
        self.provider = provider
        self.refresh_s = refresh_s
        self.symmetric = provider.algorithms[0] in HS_ALGORITHMS
        self.keys: dict[str | None, Any] = {}
        self.loaded = self.symmetric or provider.jwks is not None
        self.fetched_at = 0.0
        self.error = ""
        self._fetch: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None
        self._refreshing: asyncio.Task[None] | None = None  # a refresh for an unknown kid
        if provider.jwks is not None:
            self._install(provider.jwks)

    def _install(self, jwks: dict[str, Any]) -> None:
        keys: dict[str | None, Any] = {}
        for entry in jwks.get("keys") or []:
            try:
                key = jwt.PyJWK.from_dict(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
                log.warning("jwt provider %s: a JWKS key is unusable: %s", self.provider.name, exc)
                continue
            if entry.get("use", "sig") != "sig":
                continue
            keys[key.key_id] = key
        self.keys = keys
        self.loaded = True

    # JWKS URL
    def start(self) -> None:
        if self.provider.jwks_url and self._fetch is None:
            self._ready = asyncio.Event()
            self._fetch = asyncio.get_running_loop().create_task(self._refresh_loop())

    def stop(self) -> None:
        if self._fetch is not None:
            self._fetch.cancel()
            self._fetch = None

    async def _refresh_loop(self) -> None:
        while True:
            await self.refresh()
            await asyncio.sleep(self.refresh_s if self.loaded else min(self.refresh_s, 5.0))

    async def refresh(self) -> None:
        self.fetched_at = time.monotonic()
        try:
            jwks = await asyncio.to_thread(_fetch_jwks, self.provider.jwks_url)
            self._install(jwks)
            self.error = ""
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"[:300]
            log.warning("jwt provider %s: cannot fetch %s: %s", self.provider.name,
                        self.provider.jwks_url, self.error)
        finally:
            if self._ready is not None:
                self._ready.set()

    async def wait_loaded(self, timeout_s: float = FETCH_TIMEOUT_S) -> None:
        """Until the first fetch (or the refresh an unknown kid started) is done, bounded."""
        if self._ready is None:
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()
                refreshing = self._refreshing
                if refreshing is not None:
                    await asyncio.shield(refreshing)
        except TimeoutError:
            pass

    def _unknown_kid(self) -> bool:
        """A token names a key id we do not have: the IdP may have rotated its keys. Fetch
        again (at most every UNKNOWN_KID_REFRESH_S); True if the caller should wait for it."""
        if self._refreshing is not None:
            return True
        if (self.provider.jwks_url and self._fetch is not None
                and time.monotonic() - self.fetched_at >= UNKNOWN_KID_REFRESH_S):
            self.fetched_at = time.monotonic()
            task = self._refreshing = asyncio.get_running_loop().create_task(self.refresh())
            _BACKGROUND.add(task)  # held until done (the loop keeps only weak references)

            def done(finished: asyncio.Task[None]) -> None:
                _BACKGROUND.discard(finished)
                if self._refreshing is finished:
                    self._refreshing = None

            task.add_done_callback(done)
            return True
        return False

    # verification
    def verify(self, token: str) -> dict[str, Any] | str:
        """The claims, or PENDING (the JWKS is still being fetched); AuthFailure if bad."""
        provider = self.provider
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthFailure(401, "token-too-large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthFailure(401, "malformed-token") from None
        alg = header.get("alg")
        if alg not in provider.algorithms:  # "none", HS256 against an RS256 provider, ...
            raise AuthFailure(401, "algorithm-not-allowed")
        key: Any
        if self.symmetric:
            key = provider.secret
        else:
            if not self.loaded:
                return PENDING
            kid = header.get("kid")
            found = self.keys.get(kid) if isinstance(kid, str) or kid is None else None
            if found is None and kid is None and len(self.keys) == 1:
                found = next(iter(self.keys.values()))
            if found is None:
                if self._unknown_kid():
                    return PENDING  # the request waits for the refresh, then tries again
                raise AuthFailure(401, "unknown-key")
            key = found.key
        options: dict[str, Any] = {"require": ["exp"], "verify_aud": bool(provider.audience),
                                   "verify_iss": bool(provider.issuer)}
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=list(provider.algorithms),
                audience=provider.audience or None, issuer=provider.issuer or None,
                leeway=provider.leeway_s, options=options)  # type: ignore[arg-type]
        except jwt.ExpiredSignatureError:
            raise AuthFailure(401, "token-expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthFailure(401, "token-not-yet-valid") from None
        except jwt.InvalidAudienceError:
            raise AuthFailure(401, "wrong-audience") from None
        except jwt.InvalidIssuerError:
            raise AuthFailure(401, "wrong-issuer") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise AuthFailure(401, "invalid-token") from None
        return claims


def _fetch_jwks(url: str) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"accept": "application/json"})
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as answer:  # noqa: S310
        body = answer.read(MAX_JWKS_BYTES + 1)
    if len(body) > MAX_JWKS_BYTES:
        raise ValueError("JWKS larger than 1 MiB")
    data = json.loads(body)
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("not a JWKS (no keys list)")
    return data
