"""RecipientRewriteTable: aliases, catch-alls, regex and domain mappings, errors, loops."""

from __future__ import annotations

import pytest

from mailet_mta.api import ConfigurationError, Mail, MailAddress
from mailet_mta.testing import FakeMailContext, run
from mailets.mailets.recipient_rewrite_table import RecipientRewriteTable
from mailets.rewrite_mappings import MAX_DEPTH, parse_mapping_entries

A = MailAddress.parse


def rewrite(stored=None, recipients=("bob@example.com",), **params):
    """Run the mailet on a mail; returns (mail, context)."""
    ctx = FakeMailContext(domains=["example.com", "alias.example"], mappings=stored or {})
    mailet = ctx.mailet(RecipientRewriteTable, **params)
    mail = Mail(sender=A("eve@remote.org"), recipients=[A(r) for r in recipients],
                message=b"Subject: x\r\n\r\nbody\r\n")
    run(mailet.service(mail))
    return mail, ctx


def rcpts(mail):
    return [str(r) for r in mail.recipients]


def forwarded(ctx):
    """The recipients of the copies sent on to other domains (state root)."""
    return [str(r) for mail, state, _ in ctx.sent if state == "root" for r in mail.recipients]


def test_address_without_mapping_is_unchanged():
    mail, ctx = rewrite({"alice@example.com": ["carol@example.com"]})
    assert rcpts(mail) == ["bob@example.com"] and mail.state == "root" and not ctx.sent


def test_alias_to_several_addresses():
    mail, ctx = rewrite({"bob@example.com": ["carol@example.com", "dave@remote.org"]})
    assert rcpts(mail) == ["carol@example.com"]
    assert forwarded(ctx) == ["dave@remote.org"]


def test_alias_to_a_remote_address_is_forwarded_in_a_copy_sent_by_the_mailet():
    mail, ctx = rewrite({"bob@example.com": ["robert@remote.org"]},
                        recipients=["bob@example.com", "stranger@other.org"])
    assert rcpts(mail) == ["stranger@other.org"]        # named by the client: not ours
    (copy, state, _delay), = ctx.sent
    assert state == "root" and rcpts(copy) == ["robert@remote.org"]
    assert copy.sender == mail.sender and copy.name != mail.name


def test_forward_processor_parameter_names_where_forwards_go():
    mail, ctx = rewrite({"bob@example.com": ["robert@remote.org"]},
                        forwardProcessor="transport")
    assert mail.state == "ghost" and [s for _m, s, _d in ctx.sent] == ["transport"]


def test_alias_that_keeps_the_original_address_stops_there():
    mail, _ = rewrite({"bob@example.com": ["bob@example.com", "archive@example.com"]})
    assert rcpts(mail) == ["bob@example.com", "archive@example.com"]


def test_aliases_apply_recursively():
    mail, _ = rewrite({"bob@example.com": ["team@example.com"],
                       "team@example.com": ["carol@example.com", "dan@example.com"]})
    assert rcpts(mail) == ["carol@example.com", "dan@example.com"]


def test_wildcard_catches_addresses_without_their_own_mapping():
    mail, _ = rewrite({"*@example.com": ["catchall@example.com"],
                       "alice@example.com": ["alice@example.com"]},
                      recipients=["nobody@example.com", "alice@example.com"])
    assert rcpts(mail) == ["catchall@example.com", "alice@example.com"]


def test_exact_mapping_wins_over_wildcard():
    mail, ctx = rewrite({"*@example.com": ["catchall@example.com"],
                         "bob@example.com": ["robert@remote.org"]})
    assert rcpts(mail) == [] and forwarded(ctx) == ["robert@remote.org"]


@pytest.mark.parametrize("target", [
    r"regex:(.*)@example\.com:\1@remote.org",
    r"regex:(.*)@example\.com:${1}@remote.org",
])
def test_regex_mapping_rewrites_with_groups(target):
    _mail, ctx = rewrite({"bob@example.com": [target]})
    assert forwarded(ctx) == ["bob@remote.org"]


def test_regex_mapping_that_does_not_match_keeps_the_address():
    mail, _ = rewrite({"bob@example.com": [r"regex:(.*)@other\.com:\1@remote.org"]})
    assert rcpts(mail) == ["bob@example.com"]


def test_domain_alias_replaces_the_domain():
    mail, _ = rewrite({"alias.example": ["domain:example.com"]},
                      recipients=["bob@alias.example", "x@remote.org"])
    assert rcpts(mail) == ["bob@example.com", "x@remote.org"]


def test_domain_alias_then_address_mapping():
    mail, _ = rewrite({"alias.example": ["domain:example.com"],
                       "bob@example.com": ["carol@example.com"]},
                      recipients=["bob@alias.example"])
    assert rcpts(mail) == ["carol@example.com"]


def test_error_mapping_sends_the_recipient_to_the_error_processor():
    mail, ctx = rewrite({"bob@example.com": ["error:550 5.1.1 bob has left"]},
                        recipients=["bob@example.com", "carol@example.com"],
                        errorProcessor="rrt-error")
    assert rcpts(mail) == ["carol@example.com"] and mail.state == "root"
    [(copy, state, _)] = ctx.sent
    assert state == "rrt-error" and copy.state == "rrt-error"
    assert rcpts(copy) == ["bob@example.com"]
    assert copy.error_message == "550 5.1.1 bob has left"
    assert copy.name != mail.name


def test_all_recipients_refused_ghosts_the_mail():
    mail, ctx = rewrite({"*@example.com": ["error:550 no such user"]},
                        recipients=["a@example.com", "b@example.com"])
    assert mail.recipients == [] and mail.state == Mail.GHOST
    [(copy, state, _)] = ctx.sent
    assert state == "error" and rcpts(copy) == ["a@example.com", "b@example.com"]


def test_error_deeper_in_the_chain_refuses_the_original_recipient():
    mail, ctx = rewrite({"bob@example.com": ["old@example.com"],
                         "old@example.com": ["error:550 gone"]})
    assert mail.state == Mail.GHOST
    assert rcpts(ctx.sent[0][0]) == ["bob@example.com"]


def test_loop_goes_to_the_error_processor_with_a_clear_message():
    mail, ctx = rewrite({"bob@example.com": ["carol@example.com"],
                         "carol@example.com": ["bob@example.com"]})
    [(copy, state, _)] = ctx.sent
    assert state == "error"
    assert "loop" in copy.error_message.lower()
    assert "bob@example.com -> carol@example.com -> bob@example.com" in copy.error_message


def test_chains_deeper_than_the_limit_are_refused():
    chain = {f"u{i}@example.com": [f"u{i + 1}@example.com"] for i in range(MAX_DEPTH + 2)}
    mail, ctx = rewrite(chain, recipients=["u0@example.com"])
    assert mail.state == Mail.GHOST
    assert str(MAX_DEPTH) in ctx.sent[0][0].error_message


def test_chains_within_the_limit_resolve():
    chain = {f"u{i}@example.com": [f"u{i + 1}@example.com"] for i in range(MAX_DEPTH - 1)}
    mail, _ = rewrite(chain, recipients=["u0@example.com"])
    assert rcpts(mail) == [f"u{MAX_DEPTH - 1}@example.com"]


def test_invalid_stored_target_refuses_the_recipient():
    mail, ctx = rewrite({"bob@example.com": ["not an address"]})
    assert mail.state == Mail.GHOST and "Invalid rewrite mapping" in ctx.sent[0][0].error_message


def test_duplicate_targets_are_delivered_once():
    mail, _ = rewrite({"a@example.com": ["c@example.com"], "b@example.com": ["c@example.com"]},
                      recipients=["a@example.com", "b@example.com"])
    assert rcpts(mail) == ["c@example.com"]


# -- mappings in the mailet configuration -------------------------------------------
def test_configured_mappings_work_without_the_server_table():
    mail, _ = rewrite(mapping="sales@example.com=bob@example.com;alice@example.com,"
                              " *@alias.example=postmaster@example.com",
                      recipients=["sales@example.com", "x@alias.example"])
    assert rcpts(mail) == ["bob@example.com", "alice@example.com", "postmaster@example.com"]


def test_configured_mappings_as_a_list_and_over_the_server_table():
    mail, _ = rewrite({"bob@example.com": ["stored@example.com"]},
                      mappings=["bob@example.com=configured@example.com"])
    assert rcpts(mail) == ["configured@example.com"]


def test_configured_regex_with_commas_is_one_entry():
    table = parse_mapping_entries([r"*@example.com=regex:(a{1,3})@example\.com:\1@x.org"])
    assert table == {"*@example.com": [r"regex:(a{1,3})@example\.com:\1@x.org"]}


@pytest.mark.parametrize("entry,message", [
    ("bob@example.com", "source=target"),
    ("bob@example.com=", "source=target"),
    ("bad source=x@y.org", "not an address"),
    ("bob@example.com=not an address", "not an address"),
    ("bob@example.com=regex:(:x", "regex"),
    ("example.com=domain:", "domain:"),
    ("example.com=error:", "error:"),
])
def test_invalid_configured_mappings_are_refused_at_init(entry, message):
    ctx = FakeMailContext()
    with pytest.raises(ConfigurationError, match=message):
        ctx.mailet(RecipientRewriteTable, mapping=entry)


def test_required_processors_names_the_error_processor():
    ctx = FakeMailContext()
    assert ctx.mailet(RecipientRewriteTable).required_processors() == ["error", "root"]
    assert ctx.mailet(RecipientRewriteTable, errorProcessor="rrt-error") \
        .required_processors() == ["rrt-error", "root"]
