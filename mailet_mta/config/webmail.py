"""The ``webmail:`` section: the users' web mail listener (off unless enabled).

The listener keys are those of ``webadmin:`` (``enabled``, ``host`` — loopback by
default —, ``port``, ``listen``, ``https.enabled`` with a ``tls`` block,
``maxBodySize``); James ships no webmail, so the rest are named after what they bound.
``maxBodySize`` bounds a composed message with its attachments (multipart/form-data);
its default follows the largest message the submission listener takes. The section is
kept in ``ServerConfig.extra["webmail"]``; docs/webmail.md describes the pages.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import values as v
from .model import TLSConfig, doc
from .tree import Node, fail
from .webadmin import HOSTNAMES_DOC, WEBADMIN_KEYS, HTTPListenerSection, check_listener

MiB = 1024 * 1024


@dataclass
class WebmailConfig(HTTPListenerSection):
    """The users' web mail (``webmail:``)."""

    enabled: bool = doc("serve the web mail", default=False)
    host: str = doc("address to bind; loopback unless you mean it", default="127.0.0.1")
    port: int = doc("TCP port; 0 picks a free one", default=8081)
    listen: str | None = doc("Twisted endpoint string instead of host and port",
                             default=None)
    https_enabled: bool = doc("TLS with the certificate of the tls block; session "
                              "cookies are then Secure", default=False)
    tls: TLSConfig | None = doc("certificate and key (PEM), as for the mail listeners",
                                default=None)
    max_body_size: int = doc("largest request accepted (a composed message with its "
                             "attachments, form-encoded); larger ones get 413",
                             default=35 * MiB)
    max_page_size: int = doc("messages on one page of a folder", default=50)
    submission: str | None = doc("name of the SMTP listener that sends the users' mail "
                                 "(default: the first with authRequired true)",
                                 default=None)
    session_idle_timeout: float = doc("seconds a session lasts without a request",
                                      default=1800.0)
    max_sessions: int = doc("sessions held at once; the oldest idle one goes first",
                            default=10_000)
    max_search_messages: int = doc("newest messages of a folder one search reads",
                                   default=2000)
    max_attachments: int = doc("attachments of one composed message", default=20)
    hostnames: list[str] | None = doc(HOSTNAMES_DOC, default=None)
    source: str | None = None


WEBMAIL_KEYS = {
    **{k: val for k, val in WEBADMIN_KEYS.items() if "PageSize" not in k
       and "page_size" not in k},
    "pageSize": ("max_page_size", v.integer(1)),
    "page_size": ("max_page_size", v.integer(1)),
    "submission": ("submission", v.optional_text),
    "sessionIdleTimeout": ("session_idle_timeout", v.duration()),
    "session_idle_timeout": ("session_idle_timeout", v.duration()),
    "maxSessions": ("max_sessions", v.integer(1)),
    "max_sessions": ("max_sessions", v.integer(1)),
    "maxSearchMessages": ("max_search_messages", v.integer(1)),
    "max_search_messages": ("max_search_messages", v.integer(1)),
    "maxAttachments": ("max_attachments", v.integer(0)),
    "max_attachments": ("max_attachments", v.integer(0)),
}


def build_webmail(node: Node, what: str) -> WebmailConfig:
    from .build import read_keys

    cfg = WebmailConfig(source=node.source)
    seen: dict[str, str] = {}
    read_keys(node, what, WEBMAIL_KEYS, cfg, seen=seen)
    check_listener(cfg, seen, node, what)
    if cfg.max_page_size > 500:
        fail(f"{what}.pageSize must be 500 or less, not {cfg.max_page_size}", node.source)
    if cfg.session_idle_timeout < 60:
        fail(f"{what}.sessionIdleTimeout must be at least 60 seconds, not "
             f"{cfg.session_idle_timeout:g}", node.source)
    if cfg.max_sessions > 1_000_000:
        fail(f"{what}.maxSessions must be 1000000 or less, not {cfg.max_sessions}",
             node.source)
    if cfg.max_search_messages > 100_000:
        fail(f"{what}.maxSearchMessages must be 100000 or less, not "
             f"{cfg.max_search_messages}", node.source)
    if cfg.max_attachments > 1000:
        fail(f"{what}.maxAttachments must be 1000 or less, not {cfg.max_attachments}",
             node.source)
    return cfg


def webmail_config(config) -> WebmailConfig:
    """The section of a loaded ServerConfig (disabled defaults when the file has none)."""
    return config.extra.get("webmail") or WebmailConfig()
