"""LocalDelivery files mail into folders through the real pipeline: ``folder``, and
``folderAttribute`` set by an earlier mailet ("spam → Junk" without Sieve)."""

from __future__ import annotations

import pytest_twisted

from mailet_mta.api import Mail, MailAddress
from mailet_mta.config.model import MailetSpec, MatcherSpec
from mailet_mta.storage import domains, mailboxes, users
from tests.unit.test_spool_manager import accept, harness, settle  # noqa: F401 - fixture

ATTR = "org.example.folder"


def _pipeline(**local_delivery):
    return {"root": [
        MailetSpec(mailet="SetMailAttribute", match=MatcherSpec("HasHeader", "X-Spam-Flag"),
                   parameters={ATTR: "Junk"}),
        MailetSpec(mailet="SetMailAttribute", match=MatcherSpec("HasHeader", "X-List"),
                   parameters={ATTR: "Lists/python"}),
        MailetSpec(mailet="SetMailAttribute", match=MatcherSpec("HasHeader", "X-Bad"),
                   parameters={ATTR: "bad//name"}),
        MailetSpec(mailet="LocalDelivery", parameters=local_delivery),
    ]}


async def _deliver(sm, db, blobs, headers: bytes) -> None:
    body = headers + b"Subject: hi\r\n\r\nbody\r\n"
    mail = Mail(sender=MailAddress.parse("s@example.org"),
                recipients=[MailAddress.parse("bob@example.com")], message=body)
    await accept(sm, blobs, mail, body)
    await settle(sm, db)


def _folders(db) -> dict:
    with db.engine.connect() as conn:
        return {name: (count, special) for name, _v, _n, count, _m, special
                in mailboxes.folder_states(conn, "bob@example.com")}


def _setup(harness, **params):  # noqa: F811
    sm, db, blobs = harness(_pipeline(**params))
    with db.transaction() as conn:
        domains.add_domain(conn, "example.com")
        users.add_user(conn, "bob@example.com", "h")
    sm.pipeline.context.directory.load_sync()
    return sm, db, blobs


@pytest_twisted.ensureDeferred
async def test_folder_attribute_files_spam_into_junk_which_is_created(harness):  # noqa: F811
    sm, db, blobs = _setup(harness, folderAttribute=ATTR)
    await _deliver(sm, db, blobs, b"")
    await _deliver(sm, db, blobs, b"X-Spam-Flag: YES\r\n")
    await _deliver(sm, db, blobs, b"X-List: python\r\n")
    await _deliver(sm, db, blobs, b"X-Bad: 1\r\n")             # not a folder name: INBOX
    assert _folders(db) == {"INBOX": (2, None), "Junk": (1, "\\Junk"),
                            "Lists": (0, None), "Lists/python": (1, None)}


@pytest_twisted.ensureDeferred
async def test_the_folder_parameter_files_everything_there(harness):  # noqa: F811
    sm, db, blobs = _setup(harness, folder="Archive/2026")
    await _deliver(sm, db, blobs, b"X-Spam-Flag: YES\r\n")       # no folderAttribute
    assert _folders(db) == {"Archive": (0, "\\Archive"), "Archive/2026": (1, None)}
