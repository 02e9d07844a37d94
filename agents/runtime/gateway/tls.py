"""The gateway's TLS listeners: one server context per certificate, SNI picking one by
the certificates' DNS names."""

from __future__ import annotations

import ssl

from cryptography import x509

from agents.runtime.gateway.config import GatewayListener


def certificate_names(path: str) -> list[str]:
    with open(path, "rb") as handle:
        cert = x509.load_pem_x509_certificate(handle.read())
    names: list[str] = []
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = [n.lower() for n in ext.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        pass
    if not names:
        names = [str(a.value).lower() for a in
                 cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)]
    return names


def _server_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    ctx.load_cert_chain(cert, key)
    return ctx


def tls_context(listener: GatewayListener) -> ssl.SSLContext:
    """The first certificate's context; SNI picks another by the certificates' DNS names
    (exact first, then one-label wildcard)."""
    contexts = [_server_context(str(c.cert), str(c.key)) for c in listener.certificates]
    by_name: dict[str, ssl.SSLContext] = {}
    for cert, ctx in zip(listener.certificates, contexts, strict=True):
        for name in certificate_names(str(cert.cert)):
            by_name.setdefault(name, ctx)
    default = contexts[0]

    def choose(sock: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        if not server_name:
            return
        name = server_name.lower()
        chosen = by_name.get(name)
        if chosen is None and "." in name:
            chosen = by_name.get("*." + name.split(".", 1)[1])
        if chosen is not None and chosen is not default:
            sock.context = chosen

    default.sni_callback = choose  # type: ignore[assignment]
    return default
