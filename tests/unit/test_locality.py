"""One notion of "local": the directory answers the RCPT check, the matchers and the
mailet context alike (own IP literals, postmaster, aliases from the configuration and
the database, forwards)."""

from __future__ import annotations

from functools import cache

import pytest

from mailet_mta.acceptance import SpoolBackend
from mailet_mta.address import MailAddress
from mailet_mta.config import default_config
from mailet_mta.context import MailetContext
from mailet_mta.directory import Directory, configured_mappings, is_own_ip
from mailets.matchers.local_recipients import HostIsLocal, RecipientIsLocal

A = MailAddress.parse


def directory(users=("alice@example.com",), mappings=None, configured=None,
              postmaster="postmaster@example.com", domains=()) -> Directory:
    d = Directory(None, ["example.com", "example.net"], postmaster, configured)
    d.apply({"domains": set(domains), "users": set(users), "quotas": {},
             "mappings": mappings or {}, "generation": 1})
    return d


def test_own_ip_literals_are_local_domains_and_others_are_not():
    d = directory()
    assert d.is_local_domain("[127.0.0.1]")
    assert d.is_local_domain("[IPv6:::1]") == is_own_ip("::1")
    assert not d.is_local_domain("[192.0.2.1]")          # TEST-NET: not this host
    assert not d.is_local_domain("[0.0.0.0]")            # binds, but is nobody's address
    assert not d.is_local_domain("[224.0.0.1]")


def test_address_at_own_ip_literal_is_the_user_at_the_first_servername():
    d = directory()
    assert d.canonical(A("Alice@[127.0.0.1]")) == A("Alice@example.com")
    assert d.local_users_of(A("alice@[127.0.0.1]")) == ["alice@example.com"]
    assert d.is_local_email(A("alice@[127.0.0.1]"))
    assert not d.is_local_email(A("nobody@[127.0.0.1]"))


def test_literal_cache_is_bounded():
    from mailet_mta import directory as module

    d = directory()
    for i in range(module.MAX_LITERAL_CACHE + 10):
        d.is_own_literal(f"[198.18.{i // 256}.{i % 256}]")
    assert len(d._own_literals) <= module.MAX_LITERAL_CACHE


def test_postmaster_of_every_local_domain_reaches_the_configured_postmaster():
    d = directory(users=("postmaster@example.com",))
    assert d.local_users_of(A("postmaster@example.net")) == ["postmaster@example.com"]
    assert d.is_local_email(A("PostMaster@[127.0.0.1]"))
    assert d.postmaster_problem() is None


def test_postmaster_without_mailbox_is_reported_with_the_commands_that_fix_it():
    d = directory(users=("alice@example.com",))
    assert not d.is_local_email(A("postmaster@example.net"))
    problem = d.postmaster_problem()
    assert "postmaster@example.com has no mailbox" in problem
    assert "mailet-mta users add postmaster@example.com" in problem
    assert "mailet-mta aliases add postmaster@example.com" in problem


def test_postmaster_may_be_an_alias_of_a_user():
    d = directory(mappings={"postmaster@example.com": ["alice@example.com"]})
    assert d.postmaster_problem() is None
    assert d.is_local_email(A("postmaster@example.net"))


def test_alias_is_accepted_only_when_a_target_is_deliverable():
    d = directory(mappings={"sales@example.com": ["alice@example.com"],
                            "ghost@example.com": ["nobody@example.com"],
                            "gone@example.com": ["error:550 5.1.1 left the company"],
                            "fwd@example.com": ["friend@remote.org"],
                            "loop@example.com": ["loop2@example.com"],
                            "loop2@example.com": ["loop@example.com"]})
    assert d.is_local_email(A("sales@example.com"))
    assert d.is_local_email(A("fwd@example.com"))         # a forward: relayed
    assert not d.is_local_email(A("ghost@example.com"))   # would bounce: refuse now
    assert not d.is_local_email(A("gone@example.com"))
    assert not d.is_local_email(A("loop@example.com"))


def test_catch_all_and_domain_alias():
    d = directory(mappings={"*@example.net": ["alice@example.com"]},
                  domains={"alias.example"},
                  configured={"alias.example": ["domain:example.com"]})
    assert d.is_local_email(A("anything@example.net"))
    assert d.is_local_email(A("alice@alias.example"))
    assert not d.is_local_email(A("bob@alias.example"))


def test_configured_mappings_come_first_then_the_database():
    d = directory(configured={"sales@example.com": ["alice@example.com"]},
                  mappings={"sales@example.com": ["nobody@example.com"],
                            "info@example.com": ["alice@example.com"]})
    assert d.lookup_mappings(A("Sales@Example.com")) == ["alice@example.com"]
    assert d.lookup_mappings(A("info@example.com")) == ["alice@example.com"]
    assert d.is_local_email(A("sales@example.com"))


def test_configured_mappings_are_read_from_every_recipient_rewrite_table_mailet():
    config = default_config()
    transport = config.spoolmanager.processors["transport"]
    rrt = next(m for m in transport.mailets if m.mailet == "RecipientRewriteTable")
    rrt.parameters["mapping"] = "sales@example.com=alice@example.com;bob@example.com"
    assert configured_mappings(config.spoolmanager) == {
        "sales@example.com": ["alice@example.com", "bob@example.com"]}


def test_rcpt_check_matchers_and_context_give_the_same_answer():
    """The listener's backend and the pipeline's matchers ask the same directory."""
    from mailet_mta.api import Mail, MatcherConfig

    d = directory(users=("alice@example.com", "postmaster@example.com"),
                  configured={"sales@example.com": ["alice@example.com"]},
                  mappings={"fwd@example.com": ["friend@remote.org"]})
    config = default_config()
    backend = SpoolBackend(config, config.smtpservers[0], d, None, None, None)
    context = MailetContext(config, d, None)
    local = RecipientIsLocal()
    local.init(MatcherConfig("RecipientIsLocal", None, context, "transport"))
    host = HostIsLocal()
    host.init(MatcherConfig("HostIsLocal", None, context, "transport"))
    addresses = ["alice@example.com", "sales@example.com", "fwd@example.com",
                 "nobody@example.com", "postmaster@[127.0.0.1]", "alice@[127.0.0.1]",
                 "x@remote.org", "x@[192.0.2.1]"]
    mail = Mail(sender=A("eve@forged.example"), recipients=[A(a) for a in addresses],
                message=b"Subject: x\r\n\r\nx\r\n")
    accepted = [a for a in addresses if backend.is_local_address(A(a))]
    assert accepted == [str(r) for r in local.match(mail)]
    assert accepted == ["alice@example.com", "sales@example.com", "fwd@example.com",
                        "postmaster@[127.0.0.1]", "alice@[127.0.0.1]"]
    in_local_domain = [a for a in addresses
                       if backend.is_local_domain(A(a).domain)]
    assert in_local_domain == [str(r) for r in host.match(mail)]
    assert backend.postmaster == A("postmaster@example.com")


@pytest.mark.parametrize("source", ["Sales@Example.com", "sales@example.com"])
def test_mapping_sources_compare_case_insensitively(source):
    from mailets.rewrite_mappings import lookup_in, parse_mapping_entries

    table = parse_mapping_entries([f"{source}=alice@example.com"])
    assert lookup_in(table, A("SALES@example.com")) == ["alice@example.com"]


def test_init_creates_the_postmaster_mailbox_and_check_config_warns_when_it_is_gone(
        tmp_path, capsys):
    from mailet_mta.cli import main

    site = tmp_path / "site"
    assert main(["init", str(site), "--domain", "example.com"]) == 0
    out = capsys.readouterr().out
    assert "created the mailbox of the postmaster postmaster@example.com" in out
    assert "users passwd postmaster@example.com" in out
    config = str(site / "mailet-mta.yaml")
    assert main(["users", "list", "--config", config]) == 0
    assert "postmaster@example.com" in capsys.readouterr().out
    assert main(["check-config", config]) == 0
    assert "warning" not in capsys.readouterr().err

    assert main(["users", "remove", "postmaster@example.com", "--config", config]) == 0
    capsys.readouterr()
    assert main(["check-config", config]) == 0
    warning = capsys.readouterr().err
    assert "warning: the postmaster postmaster@example.com has no mailbox" in warning
    assert main(["aliases", "add", "postmaster@example.com", "nobody@example.com",
                 "--config", config]) == 0
    assert "note: no target of postmaster@example.com is deliverable" in \
        capsys.readouterr().out


def test_locked_postmaster_account_cannot_log_in():
    from mailet_mta.cli.init import LOCKED_PASSWORD
    from mailet_mta.storage.passwords import verify_password

    assert not verify_password(LOCKED_PASSWORD, "")
    assert not verify_password(LOCKED_PASSWORD, "!locked")


@cache
def _shipped_pipeline(name):
    """The configuration ``name`` (loaded once: the tests only read it)."""
    from mailet_mta.cli.init_templates import render_xml, render_yaml, standard_pipeline
    from mailet_mta.config import load_config, load_config_text
    from tests.support.server import ROOT

    settings = {"domain": "example.com", "hostname": "mail.example.com",
                "config_path": "/etc/m.yaml", "data_dir": "/var/lib/m",
                "certificate": "/etc/c.pem", "private_key": "/etc/k.pem",
                "ports": {"smtp": 25, "submission": 587, "submissions": 465, "pop3": 110,
                          "pop3s": 995, "imap": 143, "imaps": 993},
                "interface": None, "production": True, "pipeline": standard_pipeline(True)}
    return {"embedded default": default_config,
            "conf/mailet-mta.yaml": lambda: load_config(ROOT / "conf" / "mailet-mta.yaml"),
            "conf/config.xml": lambda: load_config(ROOT / "conf" / "config.xml"),
            "init yaml": lambda: load_config_text(render_yaml(settings), "yaml"),
            "init xml": lambda: load_config_text(render_xml(settings), "xml")}[name]()


@pytest.mark.parametrize("state", ["local-address-error", "relay-denied", "rrt-error"])
@pytest.mark.parametrize("name", ["embedded default", "conf/mailet-mta.yaml",
                                  "conf/config.xml", "init yaml", "init xml"])
def test_shipped_pipelines_never_bounce_refused_mail_of_an_unauthenticated_client(
        name, state):
    """Backscatter: refused mail of a stranger is stored, never bounced to its (maybe
    forged) sender; an authenticated client still gets its bounce where one is due."""
    from mailet_mta.api import ATTR_AUTH_USER, Mail
    from mailet_mta.spool.processor import Pipeline
    from mailet_mta.testing import FakeMailContext, run

    config = _shipped_pipeline(name)

    def outcome(authenticated: bool):
        ctx = FakeMailContext(domains=["example.com"])
        pipeline = Pipeline(config.spoolmanager, ctx)
        mail = Mail(sender=A("victim@forged.example"), recipients=[A("nobody@example.com")],
                    message=b"Subject: x\r\n\r\nx\r\n")
        if authenticated:
            mail.set_attribute(ATTR_AUTH_USER, "alice@example.com")
        mail.state = state
        run(pipeline.run(mail))
        return ctx

    stranger = outcome(False)
    assert stranger.sent == [] and stranger.bounced == []
    assert [repo for repo, _m in stranger.stored] == [state.replace("local-", "")]
    if state != "relay-denied":
        trusted = outcome(True)
        assert [str(m.recipients[0]) for m, _s, _d in trusted.sent] == [
            "victim@forged.example"]


def test_mailbox_is_full_only_when_every_mailbox_it_reaches_is_full():
    d = directory(users=("alice@example.com", "dora@example.com", "erin@example.com"),
                  mappings={"team@example.com": ["alice@example.com", "dora@example.com"],
                            "quota-team@example.com": ["dora@example.com",
                                                       "erin@example.com"]})
    d.quotas = {"dora@example.com": 1000, "erin@example.com": 1000}
    d.usage = {"dora@example.com": 900}
    assert not d.mailbox_full(A("dora@example.com"), 0)       # no SIZE=: room left
    assert d.mailbox_full(A("dora@example.com"), 101)
    assert not d.mailbox_full(A("dora@example.com"), 100)
    assert not d.mailbox_full(A("team@example.com"), 5000)    # alice has no quota
    assert not d.mailbox_full(A("quota-team@example.com"), 500)
    assert d.mailbox_full(A("quota-team@example.com"), 1500)
    assert d.mailbox_full(A("erin@example.com"), 2000, usage={"erin@example.com": 0})
    assert not d.mailbox_full(A("friend@remote.org"), 10 ** 9)
    d.usage = {"dora@example.com": 1000}
    assert d.mailbox_full(A("dora@example.com"), 0)           # exactly full


@pytest.mark.parametrize("name", ["embedded default", "conf/mailet-mta.yaml",
                                  "conf/config.xml", "init yaml", "init xml"])
def test_shipped_pipelines_report_a_refused_local_delivery_and_keep_a_report(name):
    """Nothing accepted vanishes: a mailbox refusal becomes a delivery report to the
    sender; a report that cannot be delivered (sender <>) is kept."""
    from mailet_mta.api import Mail
    from mailet_mta.spool.processor import Pipeline
    from mailet_mta.testing import FakeMailContext, run

    config = _shipped_pipeline(name)
    local = config.spoolmanager.processors["local-delivery"].mailets[0]
    assert local.parameters["errorProcessor"] == "local-delivery-error"
    for sender in (A("alice@example.org"), None):
        ctx = FakeMailContext(domains=["example.com"])
        mail = Mail(sender=sender, recipients=[A("dora@example.com")],
                    message=b"Subject: x\r\n\r\nx\r\n")
        mail.error_message = "552 5.2.2 <dora@example.com>: mailbox full"
        mail.state = "local-delivery-error"
        run(Pipeline(config.spoolmanager, ctx).run(mail))
        if sender is None:
            assert [r for r, _m in ctx.stored] == ["local-delivery-error"] and not ctx.sent
        else:
            assert [str(m.recipients[0]) for m, _s, _d in ctx.sent] == ["alice@example.org"]


def test_usage_of_users_with_a_quota_is_read_on_sqlite_and_postgresql(db_url, tmp_path):
    from mailet_mta.directory import load_usage, usage_of
    from mailet_mta.storage import domains, mailboxes, users
    from mailet_mta.storage.blobs import BlobStore
    from mailet_mta.storage.db import Database

    db = Database(db_url)
    db.upgrade()
    blobs = BlobStore(tmp_path / "blobs", inline_limit=100)
    try:
        with db.transaction() as conn:
            domains.add_domain(conn, "example.com")
            users.add_user(conn, "bob@example.com", "h")
            users.add_user(conn, "amy@example.com", "h", quota=10_000)
            for user in ("bob@example.com", "amy@example.com", "amy@example.com"):
                ref = blobs.from_bytes(b"Subject: x\r\n\r\n" + b"y" * 40)
                BlobStore.insert_row(conn, ref)
                mailboxes.store_message(conn, user, "INBOX", ref.id, b"P: 1\r\n", ref.size)
            assert load_usage(conn) == {"amy@example.com": 2 * (6 + 54)}
            assert usage_of(conn, ["bob@example.com", "amy@example.com"]) == {
                "bob@example.com": 60, "amy@example.com": 120}
        d = Directory(db, ["example.com"], "postmaster@example.com")
        d.load_sync()
        assert d.usage == {"amy@example.com": 120} and d.quotas == {"amy@example.com": 10_000}
    finally:
        db.engine.dispose()


@pytest.mark.parametrize("target, reply", [
    ("error:550 5.1.1 left the company", (550, "5.1.1", "left the company")),
    ("error:450 4.2.1 try again tomorrow", (450, "4.2.1", "try again tomorrow")),
    ("error:553 no such list", (553, "5.1.1", "no such list")),
    ("error:moved away", (550, "5.1.1", "moved away")),
    ("error:450 5.1.1 mixed", (450, "4.1.1", "5.1.1 mixed")),
])
def test_error_mapping_gives_its_own_reply_at_rcpt(target, reply):
    d = directory(mappings={"gone@example.com": [target],
                            "alias@example.com": ["gone@example.com"],
                            "loop@example.com": ["loop@example.net"],
                            "loop@example.net": ["loop@example.com"]})
    assert d.refusal_of(A("gone@example.com")) == reply
    assert d.refusal_of(A("alias@example.com")) == reply
    assert d.refusal_of(A("loop@example.com")) is None      # names internal addresses
    assert d.refusal_of(A("nobody@example.com")) is None
