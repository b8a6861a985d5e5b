"""The ``webadmin:`` section: the admin HTTP API's listener (off unless enabled).

Names follow James's ``webadmin.properties`` where it has one: ``enabled`` (default
false), ``port`` (James's default 8000), ``host`` (James: ``localhost``; here the
loopback address ``127.0.0.1``, so the API is never reachable from other machines
unless the operator says so), ``https.enabled``. James reads its certificate from a
Java keystore (``https.keystore``, ``https.password``); here it is the ``tls`` block
the mail listeners use (PEM ``certificate``, ``privateKey``, ``minimumVersion``). A
Twisted endpoint string in ``listen`` may replace ``host``/``port``. James's JWT
settings (``jwt.enabled``…) have no counterpart: requests carry bearer tokens made with
``mailet-mta webadmin token create``. The section is kept in
``ServerConfig.extra["webadmin"]``; docs/webadmin.md describes the API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import values as v
from .model import TLSConfig, doc
from .tree import Node, fail

MiB = 1024 * 1024


HOSTNAMES_DOC = ("names the Host header may carry (DNS-rebinding defence; '*.example.com' "
                 "matches below it; IP literals always pass); default: localhost, the "
                 "servernames, the SMTP helloNames and a host that is a name; others get "
                 "421")


class HTTPListenerSection:
    """What the HTTP listener sections (webadmin, webmail) share: their endpoint."""

    listen: str | None
    host: str
    port: int
    hostnames: list[str] | None

    @property
    def endpoint(self) -> str:
        """The Twisted endpoint string to listen on."""
        if self.listen:
            return self.listen
        if ":" in self.host:
            return f"tcp6:{self.port}:interface={self.host.replace(':', chr(92) + ':')}"
        return f"tcp:{self.port}:interface={self.host}"


@dataclass
class WebAdminConfig(HTTPListenerSection):
    """The admin HTTP API (``webadmin:``)."""

    enabled: bool = doc("serve the API (James's enabled)", default=False)
    host: str = doc("address to bind; loopback unless you mean it (James's host)",
                    default="127.0.0.1")
    port: int = doc("TCP port (James's port); 0 picks a free one", default=8000)
    listen: str | None = doc("Twisted endpoint string instead of host and port, e.g. "
                             "tcp:8000:interface=127.0.0.1", default=None)
    https_enabled: bool = doc("TLS on the API with the certificate of the tls block "
                              "(James's https.enabled)", default=False)
    tls: TLSConfig | None = doc("certificate and key (PEM), as for the mail listeners",
                                default=None)
    max_body_size: int = doc("largest request body accepted (JSON); a larger one is "
                             "refused with 413", default=MiB)
    max_page_size: int = doc("most items one page of a list may ask for (limit=)",
                             default=1000)
    hostnames: list[str] | None = doc(HOSTNAMES_DOC, default=None)
    source: str | None = None


def _tls(node: Node, what: str) -> TLSConfig:
    from .build import build_tls

    cfg, flags = build_tls(node, what)
    if flags:
        section = what.split(".")[0]
        face = {"webadmin": "the admin API", "webmail": "the web mail"}.get(
            section, "an HTTP listener")
        fail(f"{what}: {', '.join(flags)} has no meaning for {face}; use "
             f"{section}.https.enabled", node.source)
    return cfg


WEBADMIN_KEYS = {
    "enabled": ("enabled", v.boolean),
    "host": ("host", v.text),
    "port": ("port", v.integer(0)),
    "listen": ("listen", v.optional_text),
    "https.enabled": ("https_enabled", v.boolean),
    "httpsEnabled": ("https_enabled", v.boolean),
    "https_enabled": ("https_enabled", v.boolean),
    "tls": ("tls", _tls),
    "maxBodySize": ("max_body_size", v.size()),
    "max_body_size": ("max_body_size", v.size()),
    "maxPageSize": ("max_page_size", v.integer(1)),
    "max_page_size": ("max_page_size", v.integer(1)),
    "hostnames": ("hostnames", v.string_list),
}


def check_listener(cfg, seen: dict, node: Node, what: str) -> None:
    """The checks every HTTP listener section shares (webadmin, webmail)."""
    if cfg.port > 65535:
        fail(f"{what}.port must be 0..65535, not {cfg.port}", node.source)
    if cfg.listen and ("port" in seen or "host" in seen):
        fail(f"{what} has both listen and host/port; keep one", node.source)
    if cfg.https_enabled and cfg.tls is None:
        fail(f"{what}.https.enabled needs a tls block with certificate and privateKey "
             f"(PEM files, as for the mail listeners)", node.source)
    for name in cfg.hostnames or ():
        bare = name.strip().lower().rstrip(".")
        if not re.fullmatch(r"(\*\.)?[a-z0-9_][a-z0-9_.-]*", bare) or ".." in bare:
            fail(f"{what}.hostnames: {name!r} is not a host name (write e.g. "
                 f"mail.example.com or *.example.com; IP addresses always pass)",
                 node.source)
    if cfg.max_body_size < 1024:
        fail(f"{what}.maxBodySize must be at least 1k, not {cfg.max_body_size}",
             node.source)


def build_webadmin(node: Node, what: str) -> WebAdminConfig:
    from .build import read_keys

    cfg = WebAdminConfig(source=node.source)
    seen: dict[str, str] = {}
    read_keys(node, what, WEBADMIN_KEYS, cfg, seen=seen)
    check_listener(cfg, seen, node, what)
    if cfg.max_page_size > 100_000:
        fail(f"{what}.maxPageSize must be 100000 or less, not {cfg.max_page_size}",
             node.source)
    return cfg


def webadmin_config(config) -> WebAdminConfig:
    """The section of a loaded ServerConfig (disabled defaults when the file has none)."""
    return config.extra.get("webadmin") or WebAdminConfig()
