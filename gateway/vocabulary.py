"""What a gateway route, consumer and JWT provider may say (docs/gateway.md).

The contract is docs/agent-protocol.md, "Routes, subsets and the gateway". The
agent's gateway mode is written against the same text; when its vocabulary
module lands under agents/runtime/, these names should be imported from there
(one home for a vocabulary both sides share) rather than kept here.
"""

from __future__ import annotations

from agents.gateways import GATEWAY_NAME_RE
from agents.gateways import RESERVED_GATEWAY_NAMES as RESERVED_GATEWAY_NAMES

NAME_RE = GATEWAY_NAME_RE  # gateway, route, consumer, provider (what agents may declare)

AUTH_TYPES = ("none", "key", "jwt")
PATH_KINDS = ("exact", "prefix", "regex")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT")
RATE_SCOPES = ("route", "consumer")
RATE_MODES = ("local", "global")
RATE_PERIODS = ("second", "minute")
RATE_REQUESTS_MAX = 1_000_000_000
RATE_BURST_MAX = 1_000_000
RATE_LIMITS_MAX = 8  # per route

MAX_BODY_BYTES = (0, 1 << 30)  # 0 = no body at all; absent = the agent.yaml default
TIMEOUT_MS = (1, 3_600_000)
CORS_MAX_AGE_S = (0, 86_400)
PATH_MAX = 1024
HOSTS_MAX = 64
ROUTES_MAX = 1000  # per gateway

# JWT: never "none"; HS* take a shared secret, the others a JWKS (file or URL).
HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
JWT_ALGORITHMS = HMAC_ALGORITHMS + ASYMMETRIC_ALGORITHMS
HMAC_SECRET_MIN_BYTES = 32
LEEWAY_MAX_S = 300
# An inline JWKS rides in every gateway agent's snapshot (a larger set: jwks_url, fetched
# by the agent up to 1 MiB).
JWKS_MAX_BYTES = 128 * 1024  # 100 RSA-4096 keys with kid, use and alg: about 80 KB
DEFAULT_LEEWAY_S = 30

KEY_HASH_PREFIX = "sha256:"
DEFAULT_KEY_HEADER = "apikey"
