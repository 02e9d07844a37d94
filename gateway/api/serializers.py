"""Shapes and validation of the gateway API (docs/gateway.md). Every bad field
is a 400 naming its path (`routes[2].path.regex` comes back as nested errors)."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlsplit

from rest_framework import serializers

from agents.models import Agent
from agents.runtime.gateway.auth import jwk_error
from agents.runtime.regexes import regex_error
from gateway import vocabulary as v
from gateway.models import Consumer, ConsumerKey, Gateway, JWTProvider
from meshconsole.api import StrictSerializer, StringListField
from policies.services import subsets_of
from registry.models import Service

HOST_RE = re.compile(
    r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)
HEADER_RE = re.compile(r"^[a-z0-9!#$%&'*+.^_`|~-]{1,100}$")
QUERY_RE = re.compile(r"^[A-Za-z0-9._~-]{1,100}$")
CLAIM_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")


def _name_field(**kwargs: Any) -> serializers.RegexField:
    return serializers.RegexField(
        v.NAME_RE,
        max_length=63,
        error_messages={"invalid": "lower-case letters, digits and '-' (a DNS label)"},
        **kwargs,
    )


def _header(value: str) -> str:
    name = value.lower()
    if not HEADER_RE.match(name):
        raise serializers.ValidationError(f"{value!r} is not an HTTP header name")
    return name


class HeaderNameField(serializers.CharField):
    """An HTTP header name, lower-case on the wire (the contract)."""

    def to_internal_value(self, data: Any) -> str:
        return _header(super().to_internal_value(data))


class MethodField(serializers.ChoiceField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=v.HTTP_METHODS, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        return str(super().to_internal_value(data.upper() if isinstance(data, str) else data))


def _unique(values: list[Any], what: str) -> list[Any]:
    if len(set(values)) != len(values):
        raise serializers.ValidationError(f"a {what} is listed twice")
    return values


def origin_error(value: str) -> str | None:
    """Why VALUE is not a CORS origin (scheme://host[:port], or "*"), None if it is."""
    if value == "*":
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return f"{value!r} is not an origin"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{value!r} is not an origin (scheme://host[:port])"
    if parts.path or parts.query or parts.fragment or parts.username or parts.password:
        return f"{value!r} is not an origin: no path, query or credentials"
    if port == 0:
        return f"{value!r}: bad port"
    return None


class PathSerializer(StrictSerializer):
    exact = serializers.CharField(max_length=v.PATH_MAX, required=False, trim_whitespace=False)
    prefix = serializers.CharField(max_length=v.PATH_MAX, required=False, trim_whitespace=False)
    regex = serializers.CharField(max_length=v.PATH_MAX, required=False, trim_whitespace=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if len(attrs) != 1:
            raise serializers.ValidationError("exactly one of exact, prefix, regex")
        kind, value = next(iter(attrs.items()))
        if kind == "regex":
            problem = regex_error(value)  # does not compile, or backtracks exponentially
            if problem is not None:
                raise serializers.ValidationError({"regex": [problem]})
        elif not value.startswith("/") or any(c.isspace() or ord(c) < 0x20 for c in value):
            raise serializers.ValidationError({kind: ["a path: starts with '/', no whitespace"]})
        return {kind: value}


class KeyAuthSerializer(StrictSerializer):
    header = HeaderNameField(max_length=100, required=False, default=v.DEFAULT_KEY_HEADER)
    # A key in the query string ends up in access logs: off unless asked for.
    query = serializers.RegexField(
        QUERY_RE, max_length=100, required=False, allow_blank=True, default=""
    )


class JWTAuthSerializer(StrictSerializer):
    provider = _name_field()

    def validate_provider(self, value: str) -> str:
        if not JWTProvider.objects.filter(name=value).exists():
            raise serializers.ValidationError(f"no JWT provider {value!r}")
        return value


class AuthSerializer(StrictSerializer):
    type = serializers.ChoiceField(choices=v.AUTH_TYPES, default="none")
    key = KeyAuthSerializer(required=False)
    jwt = JWTAuthSerializer(required=False)
    consumers = serializers.ListField(child=_name_field(), max_length=1000, default=list)

    def validate_consumers(self, value: list[str]) -> list[str]:
        _unique(value, "consumer")
        known = set(Consumer.objects.filter(name__in=value).values_list("name", flat=True))
        missing = [n for n in value if n not in known]
        if missing:
            raise serializers.ValidationError(f"no consumer {', '.join(missing)}")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        kind = attrs["type"]
        out: dict[str, Any] = {"type": kind, "consumers": attrs.get("consumers", [])}
        if kind == "none":
            if out["consumers"] or "key" in attrs or "jwt" in attrs:
                raise serializers.ValidationError(
                    {"type": ["auth none takes no key, jwt or consumers"]}
                )
        elif kind == "key":
            if "jwt" in attrs:
                raise serializers.ValidationError({"jwt": ["only with type jwt"]})
            out["key"] = dict(attrs.get("key") or {"header": v.DEFAULT_KEY_HEADER, "query": ""})
        else:
            if "key" in attrs:
                raise serializers.ValidationError({"key": ["only with type key"]})
            if "jwt" not in attrs:
                raise serializers.ValidationError({"jwt": ["type jwt needs jwt.provider"]})
            out["jwt"] = dict(attrs["jwt"])
        return out


class RateLimitSerializer(StrictSerializer):
    scope = serializers.ChoiceField(choices=v.RATE_SCOPES, default="route")
    mode = serializers.ChoiceField(choices=v.RATE_MODES, default="local")
    requests = serializers.IntegerField(min_value=1, max_value=v.RATE_REQUESTS_MAX)
    per = serializers.ChoiceField(choices=v.RATE_PERIODS)
    burst = serializers.IntegerField(min_value=0, max_value=v.RATE_BURST_MAX, default=0)


class CorsSerializer(StrictSerializer):
    origins = serializers.ListField(
        child=serializers.CharField(max_length=300), min_length=1, max_length=100
    )
    methods = serializers.ListField(child=MethodField(), max_length=9, default=list)
    headers = serializers.ListField(
        child=HeaderNameField(max_length=100), max_length=100, default=list
    )
    credentials = serializers.BooleanField(default=False)
    max_age_s = serializers.IntegerField(
        min_value=v.CORS_MAX_AGE_S[0], max_value=v.CORS_MAX_AGE_S[1], default=600
    )

    def validate_origins(self, value: list[str]) -> list[str]:
        errors = [e for e in (origin_error(o) for o in value) if e]
        if errors:
            raise serializers.ValidationError(errors)
        return _unique([o.lower() for o in value], "origin")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("credentials") and "*" in attrs["origins"]:
            raise serializers.ValidationError(
                {"origins": ["'*' cannot be used with credentials (browsers refuse it)"]}
            )
        return attrs


class RouteSerializer(StrictSerializer):
    name = _name_field()
    hosts = serializers.ListField(
        child=serializers.CharField(max_length=253), max_length=v.HOSTS_MAX, default=list
    )
    path = PathSerializer(required=False)
    methods = serializers.ListField(child=MethodField(), max_length=9, default=list)
    service = serializers.RegexField(r"^[a-z0-9-]{1,63}$", max_length=63)
    subset = serializers.RegexField(
        v.NAME_RE, max_length=63, required=False, allow_blank=True, default=""
    )
    strip_prefix = serializers.BooleanField(default=False)
    auth = AuthSerializer(required=False)
    rate_limits = serializers.ListField(
        child=RateLimitSerializer(), max_length=v.RATE_LIMITS_MAX, default=list
    )
    cors = CorsSerializer(required=False, allow_null=True)
    max_body_bytes = serializers.IntegerField(
        min_value=v.MAX_BODY_BYTES[0],
        max_value=v.MAX_BODY_BYTES[1],
        required=False,
        allow_null=True,
    )
    timeout_ms = serializers.IntegerField(
        min_value=v.TIMEOUT_MS[0], max_value=v.TIMEOUT_MS[1], required=False, allow_null=True
    )

    def validate_hosts(self, value: list[str]) -> list[str]:
        hosts = [h.lower() for h in value]
        bad = [h for h in hosts if not HOST_RE.match(h)]
        if bad:
            raise serializers.ValidationError(
                f"not a host name or *.wildcard: {', '.join(bad)} (no port, no scheme)"
            )
        return _unique(hosts, "host")

    def validate_methods(self, value: list[str]) -> list[str]:
        return _unique(value, "method")

    def validate_service(self, value: str) -> str:
        if not Service.objects.filter(name=value).exists():
            raise serializers.ValidationError(f"no service {value!r}")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = dict(attrs)
        attrs["path"] = dict(attrs.get("path") or {"prefix": "/"})
        attrs["auth"] = dict(attrs.get("auth") or {"type": "none", "consumers": []})
        attrs["rate_limits"] = [dict(r) for r in attrs.get("rate_limits", [])]
        if attrs.get("cors") is not None:
            attrs["cors"] = dict(attrs["cors"])
        attrs.setdefault("cors", None)
        attrs.setdefault("max_body_bytes", None)
        attrs.setdefault("timeout_ms", None)
        if attrs["strip_prefix"] and "prefix" not in attrs["path"]:
            raise serializers.ValidationError({"strip_prefix": ["only with path.prefix"]})
        if attrs["subset"] and attrs["subset"] not in (known := subsets_of(attrs["service"])):
            defined = ", ".join(sorted(known)) or "none"
            raise serializers.ValidationError(
                {"subset": [f"service {attrs['service']} has no subset {attrs['subset']!r} "
                            f"(its subsets: {defined})"]}
            )
        return attrs


class RouteTableSerializer(StrictSerializer):
    """A PUT of a gateway's whole ordered table; `version` is the one read."""

    version = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    routes = serializers.ListField(child=RouteSerializer(), max_length=v.ROUTES_MAX)

    def validate_routes(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        _unique([r["name"] for r in value], "route name")
        return value


class GatewaySerializer(StrictSerializer):
    name = _name_field()
    description = serializers.CharField(
        max_length=200, required=False, allow_blank=True, default=""
    )

    def validate_name(self, value: str) -> str:
        if value in v.RESERVED_GATEWAY_NAMES:
            raise serializers.ValidationError(f"{value!r} is reserved (a path of the API)")
        return value


class ConsumerSerializer(StrictSerializer):
    name = _name_field()
    description = serializers.CharField(
        max_length=200, required=False, allow_blank=True, default=""
    )
    tags = StringListField(required=False, default=list)
    jwt_subjects = serializers.ListField(
        child=serializers.CharField(max_length=253), max_length=100, required=False, default=list
    )

    def validate_jwt_subjects(self, value: list[str]) -> list[str]:
        return _unique(value, "subject")


class KeyCreateSerializer(StrictSerializer):
    description = serializers.CharField(
        max_length=200, required=False, allow_blank=True, default=""
    )


def _jwks_error(jwks: Any, algorithms: list[str]) -> str | None:
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        return 'a JWKS: {"keys": [...]}'
    if not jwks["keys"] or len(jwks["keys"]) > 100:
        return "1 to 100 keys"
    if len(json.dumps(jwks, separators=(",", ":"))) > v.JWKS_MAX_BYTES:
        return f"at most {v.JWKS_MAX_BYTES} bytes as JSON; a larger key set: jwks_url"
    kinds = {"RSA" if a[0] in "RP" else "EC" for a in algorithms}
    for i, key in enumerate(jwks["keys"]):
        if not isinstance(key, dict) or key.get("kty") not in kinds:
            return f"keys[{i}]: kty must be one of {sorted(kinds)} for {', '.join(algorithms)}"
        needed = ("n", "e") if key["kty"] == "RSA" else ("crv", "x", "y")
        if not all(isinstance(key.get(k), str) and key.get(k) for k in needed):
            return f"keys[{i}]: a {key['kty']} key needs {', '.join(needed)}"
        if any(k in key for k in ("d", "p", "q", "dp", "dq", "qi", "k")):
            return f"keys[{i}]: private key material does not belong in a JWKS"
        unusable = jwk_error(key)
        if unusable is not None:
            return f"keys[{i}]: not a usable {key['kty']} public key: {unusable[:200]}"
    return None


def jwks_url_error(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "not a URL"
    try:
        port = parts.port  # ValueError: not a number, or past 65535
    except ValueError:
        return "bad port (1-65535)"
    if port == 0:
        return "bad port (1-65535)"
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname == "127.0.0.1":
        return None  # a local test IdP only
    return "https:// only (or http://127.0.0.1 for a local IdP)"


class JWTProviderSerializer(StrictSerializer):
    """A provider as written. `secret` is write-only: a GET says `secret_set`."""

    name = _name_field()
    algorithms = serializers.ListField(
        child=serializers.CharField(max_length=10), min_length=1, max_length=len(v.JWT_ALGORITHMS)
    )
    issuer = serializers.CharField(max_length=500)
    audience = serializers.CharField(max_length=500)
    jwks = serializers.JSONField(required=False, allow_null=True)
    jwks_url = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    secret = serializers.CharField(
        max_length=4096, required=False, allow_blank=True, write_only=True, trim_whitespace=False
    )
    leeway_s = serializers.IntegerField(
        min_value=0, max_value=v.LEEWAY_MAX_S, default=v.DEFAULT_LEEWAY_S
    )
    consumer_claim = serializers.RegexField(CLAIM_RE, max_length=100, default="sub")
    secret_set = serializers.SerializerMethodField()

    def get_secret_set(self, provider: JWTProvider) -> bool:
        return bool(provider.secret)

    def validate_algorithms(self, value: list[str]) -> list[str]:
        if any(a.lower() == "none" for a in value):
            raise serializers.ValidationError('"none" is never accepted: tokens must be signed')
        unknown = [a for a in value if a not in v.JWT_ALGORITHMS]
        if unknown:
            raise serializers.ValidationError(
                f"unknown {', '.join(unknown)}; one of {', '.join(v.JWT_ALGORITHMS)}"
            )
        hmac = {a in v.HMAC_ALGORITHMS for a in value}
        if len(hmac) > 1:
            # HS/RS confusion: a public key must never verify as an HMAC secret.
            raise serializers.ValidationError("HS* and RS/PS/ES algorithms cannot be mixed")
        return _unique(value, "algorithm")

    def validate_jwks_url(self, value: str) -> str:
        if value:
            error = jwks_url_error(value)
            if error:
                raise serializers.ValidationError(error)
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = dict(attrs)
        algorithms = attrs["algorithms"]
        current: JWTProvider | None = self.context.get("current")
        if "secret" not in attrs and current is not None:
            attrs["secret"] = current.secret  # write-only: a PUT that omits it keeps it
        secret, jwks, url = attrs.get("secret", ""), attrs.get("jwks"), attrs.get("jwks_url", "")
        if algorithms[0] in v.HMAC_ALGORITHMS:
            if jwks is not None or url:
                raise serializers.ValidationError({"jwks": ["HS* take a secret, not a JWKS"]})
            if len(secret.encode()) < v.HMAC_SECRET_MIN_BYTES:
                raise serializers.ValidationError(
                    {"secret": [f"HS* need a secret of at least {v.HMAC_SECRET_MIN_BYTES} bytes"]}
                )
        else:
            sent = self.initial_data.get("secret") if isinstance(self.initial_data, dict) else None
            if sent:
                raise serializers.ValidationError({"secret": ["only for HS* algorithms"]})
            attrs["secret"] = ""  # a provider moved off HS* forgets its secret
            if (jwks is None) == (not url):
                raise serializers.ValidationError(
                    {"jwks": ["RS/PS/ES need exactly one of jwks or jwks_url"]}
                )
            if jwks is not None:
                error = _jwks_error(jwks, algorithms)
                if error:
                    raise serializers.ValidationError({"jwks": [error]})
        attrs.setdefault("jwks", None)
        attrs.setdefault("secret", "")
        return attrs


class ConsumerKeyOutSerializer(serializers.ModelSerializer):
    class Meta:
        model = ConsumerKey
        fields = ["prefix", "description", "created_at", "last_used_at"]


class ConsumerOutSerializer(serializers.ModelSerializer):
    keys = ConsumerKeyOutSerializer(many=True, read_only=True)

    class Meta:
        model = Consumer
        fields = ["name", "description", "tags", "jwt_subjects", "created_at", "keys"]


class KeyCreatedSerializer(serializers.Serializer):
    consumer = serializers.CharField()
    prefix = serializers.CharField()
    key = serializers.CharField(help_text="the clear key: shown once, never again")
    key_hash = serializers.CharField()
    description = serializers.CharField()
    created_at = serializers.DateTimeField()


class GatewayOutSerializer(serializers.ModelSerializer):
    """A gateway: its route table's version, how many routes, its agents' nodes."""

    routes = serializers.SerializerMethodField()
    agents = serializers.SerializerMethodField()

    class Meta:
        model = Gateway
        fields = ["name", "description", "version", "routes", "agents", "created_at"]

    def get_routes(self, gateway: Gateway) -> int:
        return gateway.routes.count()

    def get_agents(self, gateway: Gateway) -> list[str]:
        nodes = Agent.objects.filter(gateway=gateway.name).values_list("node__name", flat=True)
        return sorted(nodes)


class RouteTableOutSerializer(serializers.Serializer):
    gateway = serializers.CharField()
    version = serializers.IntegerField()
    routes = RouteSerializer(many=True)
