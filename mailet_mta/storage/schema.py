"""The database schema (SQLAlchemy Core). Alembic migrations are generated from it.

Portable SQL only: the same tables serve SQLite (the embedded default) and PostgreSQL
(several processes sharing one database). Message bodies live in ``blobs``: inline
for small messages, as files under the data directory for large ones. A blob is shared
by every row that refers to it (spool, mailbox messages, repositories, outgoing queue),
and a sweep removes blobs nothing refers to any more.
"""

from __future__ import annotations

from sqlalchemy import (
                        BigInteger,
                        Boolean,
                        Column,
                        Float,
                        ForeignKey,
                        Index,
                        Integer,
                        LargeBinary,
                        MetaData,
                        String,
                        Table,
                        Text,
                        UniqueConstraint,
)

metadata = MetaData(naming_convention={
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

# Small key/value facts: the directory generation (bumped on every user/domain/mapping
# change so that running servers reload their in-memory directory).
meta = Table(
    "meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

domains = Table(
    "domains", metadata,
    Column("name", String(255), primary_key=True),      # lower-case ASCII (IDNA)
    Column("created", Float, nullable=False),
)

users = Table(
    "users", metadata,
    Column("name", String(320), primary_key=True),      # user@domain, domain lower-case
    Column("password_hash", Text, nullable=False),      # argon2id PHC string
    Column("quota", Integer, nullable=True),            # octets; NULL = unlimited
    Column("created", Float, nullable=False),
)

# RecipientRewriteTable: source is "local@domain", "*@domain" or "domain" (domain
# alias); target is an address, "regex:…", "error:code text" or "domain:other".
mappings = Table(
    "mappings", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source", String(320), nullable=False, index=True),
    Column("target", Text, nullable=False),
    UniqueConstraint("source", "target", name="uq_mappings_source_target"),
)

blobs = Table(
    "blobs", metadata,
    Column("id", String(40), primary_key=True),
    Column("size", Integer, nullable=False),
    Column("data", LargeBinary, nullable=True),         # NULL: the file blobs/<id[:2]>/<id>
    Column("created", Float, nullable=False),
)

spool = Table(
    "spool", metadata,
    Column("name", String(64), primary_key=True),
    Column("state", String(128), nullable=False),
    Column("sender", Text, nullable=True),              # NULL = the null sender <>
    Column("recipients", Text, nullable=False),         # JSON list of addresses
    Column("attributes", Text, nullable=False),         # JSON object
    Column("error_message", Text, nullable=True),
    Column("remote_addr", String(64), nullable=False),
    Column("remote_host", String(255), nullable=False),
    Column("helo", String(255), nullable=True),
    Column("auth_user", String(320), nullable=True),
    Column("blob_id", String(40), nullable=False),
    Column("tries", Integer, nullable=False, default=0),
    Column("not_before", Float, nullable=False, default=0.0),
    Column("created", Float, nullable=False),
    Column("last_updated", Float, nullable=False),
    Column("owner", String(128), nullable=True),        # node holding the lease
    Column("lease_until", Float, nullable=True),
    Index("ix_spool_claim", "owner", "not_before"),
)

mailboxes = Table(
    "mailboxes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("user", String(320), nullable=False),
    Column("name", String(255), nullable=False),
    Column("uid_validity", Integer, nullable=False),
    Column("uid_next", Integer, nullable=False, default=1),
    # RFC 7162: raised by every change of the folder (new mail, flags, expunge).
    Column("highest_modseq", BigInteger, nullable=False, default=1, server_default="1"),
    Column("special_use", String(32), nullable=True),   # RFC 6154: \Sent, \Trash, …
    # Kept by every write that adds or removes messages: STATUS, EXISTS and the
    # watchers read it instead of counting a large folder's rows.
    Column("message_count", Integer, nullable=False, default=0, server_default="0"),
    # Tombstones with a modseq up to this one were purged: older states cannot be
    # brought up to date by a list of expunged UIDs any more.
    Column("vanished_horizon", BigInteger, nullable=False, default=0, server_default="0"),
    UniqueConstraint("user", "name", name="uq_mailboxes_user_name"),
)

messages = Table(
    "messages", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("mailbox_id", Integer, ForeignKey("mailboxes.id", ondelete="CASCADE"),
           nullable=False),
    Column("uid", Integer, nullable=False),
    Column("uidl", String(70), nullable=False, unique=True),   # stable POP3 UIDL
    Column("blob_id", String(40), nullable=False),
    Column("prefix", LargeBinary, nullable=False),             # trace headers added here
    Column("size", Integer, nullable=False),                   # octets as sent by RETR
    Column("internal_date", Float, nullable=False),
    Column("flags", Text, nullable=False, default=""),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("modseq", BigInteger, nullable=False, default=1, server_default="1"),
    UniqueConstraint("mailbox_id", "uid", name="uq_messages_mailbox_uid"),
    Index("ix_messages_mailbox_modseq", "mailbox_id", "modseq"),
)

# Tombstones: the UIDs expunged from a folder, with the modseq of their removal, so a
# client that was away learns what went (IMAP EXPUNGE/VANISHED). Bounded per folder.
expunged = Table(
    "expunged", metadata,
    Column("mailbox_id", Integer, ForeignKey("mailboxes.id", ondelete="CASCADE"),
           primary_key=True),
    Column("uid", Integer, primary_key=True),
    Column("modseq", BigInteger, nullable=False),
    Index("ix_expunged_mailbox_modseq", "mailbox_id", "modseq"),
)

# IMAP subscriptions (LSUB, LIST (SUBSCRIBED)): names, which need not exist.
subscriptions = Table(
    "subscriptions", metadata,
    Column("user", String(320), primary_key=True),
    Column("name", String(255), primary_key=True),
)

# Named mail repositories (error, relay-denied, …): whole mails kept for inspection
# and reprocessing.
repository_mails = Table(
    "repository_mails", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("repository", String(255), nullable=False, index=True),
    Column("name", String(64), nullable=False),
    Column("state", String(128), nullable=False),
    Column("sender", Text, nullable=True),
    Column("recipients", Text, nullable=False),
    Column("attributes", Text, nullable=False),
    Column("error_message", Text, nullable=True),
    Column("remote_addr", String(64), nullable=False),
    Column("remote_host", String(255), nullable=False),
    Column("blob_id", String(40), nullable=False),
    Column("created", Float, nullable=False),
)

# The outgoing queue: one entry per mail and destination domain.
outgoing = Table(
    "outgoing", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("queue", String(128), nullable=False),
    Column("mail_name", String(64), nullable=False),
    Column("domain", String(255), nullable=False),
    Column("sender", Text, nullable=True),
    Column("recipients", Text, nullable=False),          # JSON: [{address, status, error}]
    Column("attributes", Text, nullable=False),
    Column("options", Text, nullable=False),             # JSON: the RemoteDelivery settings
    Column("blob_id", String(40), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("dns_failures", Integer, nullable=False, default=0),
    Column("next_attempt", Float, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created", Float, nullable=False),
    Column("owner", String(128), nullable=True),
    Column("lease_until", Float, nullable=True),
    Index("ix_outgoing_due", "queue", "next_attempt"),
)

# One POP3 session per mailbox at a time, across processes.
mailbox_locks = Table(
    "mailbox_locks", metadata,
    Column("user", String(320), primary_key=True),
    Column("owner", String(128), nullable=False),
    Column("lease_until", Float, nullable=False),
)

# Processes sharing the database (for status and lease take-over).
nodes = Table(
    "nodes", metadata,
    Column("name", String(128), primary_key=True),
    Column("started", Float, nullable=False),
    Column("heartbeat", Float, nullable=False),
    Column("info", Text, nullable=False, default="{}"),
)

# Failed logins per client address key (an IPv4 address or an IPv6 /64), shared by
# every process so the login budget holds for the whole cluster. Rows older than the
# throttle's window plus its block time are pruned.
auth_failures = Table(
    "auth_failures", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("client", String(64), nullable=False),
    Column("at", Float, nullable=False),
    Column("node", String(64), nullable=False),        # the process that counted it
    Index("ix_auth_failures_client_at", "client", "at"),
    Index("ix_auth_failures_at", "at"),
)

# Bearer tokens of the admin HTTP API (``mailet-mta webadmin token create NAME``): only
# the SHA-256 of each token is kept; the token itself is shown once, when created.
webadmin_tokens = Table(
    "webadmin_tokens", metadata,
    Column("name", String(64), primary_key=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created", Float, nullable=False),
)

# Web mail login sessions, shared by every process and node so any of them serves any
# session: the SHA-256 of the session id (the id itself is only in the browser's
# cookie), the user, and when it was made and last used (idle expiry, oldest first).
webmail_sessions = Table(
    "webmail_sessions", metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user", String(320), nullable=False),
    Column("created", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    Index("ix_webmail_sessions_last_seen", "last_seen"),
)

# MTA-STS policies of destination domains (RFC 8461 §5), shared by every process: a
# policy is fetched once per id and used until expires_at (fetched_at + max_age).
mta_sts_policies = Table(
    "mta_sts_policies", metadata,
    Column("domain", String(255), primary_key=True),
    Column("policy_id", String(64), nullable=False),   # id= of the _mta-sts TXT record
    Column("mode", String(16), nullable=False),        # enforce | testing | none
    Column("mx", Text, nullable=False),                # the mx: patterns, one a line
    Column("max_age", Integer, nullable=False),
    Column("fetched_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
)

# TLS-RPT (RFC 8460) counts: sessions per UTC day, policy domain, policy type
# (sts / tlsa / no-policy-found) and result type ("success" or a failure type of
# §4.3), with the receiving MX host for failures.
tls_report_counts = Table(
    "tls_report_counts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("day", String(10), nullable=False),         # YYYY-MM-DD, UTC
    Column("policy_domain", String(255), nullable=False),
    Column("policy_type", String(16), nullable=False),
    Column("result_type", String(64), nullable=False),
    Column("mx_host", String(255), nullable=False, default=""),
    Column("count", Integer, nullable=False, default=0),
    UniqueConstraint("day", "policy_domain", "policy_type", "result_type", "mx_host",
                     name="uq_tls_report_counts_key"),
)
