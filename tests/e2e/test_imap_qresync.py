"""IMAP QRESYNC (RFC 7162 §3.2) end to end: ``mailet-mta serve`` as its own process on
SQLite and on PostgreSQL, two imaplib sessions of one user. One changes flags and
expunges; the other comes back with ``SELECT … (QRESYNC (uidvalidity modseq …))`` or
``UID FETCH … (CHANGEDSINCE m VANISHED)`` and must get exactly what changed."""

from __future__ import annotations

import imaplib
import re

import pytest

from tests.support.server import ServerProcess, base_config

PASSWORD = "quick resync password"
MESSAGES = 10


USERS = [f"user{n}@example.com" for n in range(8)]      # one per test and backend


class Account:
    """One user of a shared server: the server's port and the user's address."""

    def __init__(self, srv: ServerProcess, user: str):
        self.srv, self.user = srv, user

    def port(self, listener: str) -> int:
        return self.srv.port(listener)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_server(request, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp(request.param)
    config = base_config(tmp_path / "var")
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_base_url")
        schema = _fresh_schema(url)
        config["storage"] = {"data_dir": str(tmp_path / "var"),
                             "url": f"{url}?options=-csearch_path%3D{schema}"}
    srv = ServerProcess(tmp_path, config)
    for user in USERS:
        srv.add_user(user, PASSWORD)
    srv.start()
    free = list(USERS)
    yield srv, free
    srv.stop()
    if request.param == "postgresql":
        _drop_schema(url, schema)


def _fresh_schema(url: str) -> str:
    import uuid

    import sqlalchemy as sa

    schema = "t_" + uuid.uuid4().hex[:12]
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    return schema


def _drop_schema(url: str, schema: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
    engine.dispose()


@pytest.fixture
def server(shared_server):
    """A user of its own on the shared server, with messages 1 to MESSAGES."""
    srv, free = shared_server
    account = Account(srv, free.pop())
    box = session(account)
    for n in range(1, MESSAGES + 1):
        body = f"Subject: message {n}\r\n\r\nbody {n}\r\n".encode()
        assert box.append("INBOX", None, None, body)[0] == "OK"
    box.logout()
    return account


def session(account) -> imaplib.IMAP4:
    box = imaplib.IMAP4("127.0.0.1", account.port("imap"), timeout=15)
    box.login(account.user, PASSWORD)
    return box


def raw(box: imaplib.IMAP4, name: str, *args: str) -> tuple[str, dict]:
    """Send ``name args`` as typed; → (tagged status, the untagged responses it got:
    {type: [data, …]})."""
    box.untagged_responses.clear()
    imaplib.Commands.setdefault(name, ("AUTH", "SELECTED"))
    try:
        typ, _data = box._simple_command(name, *args)
    except imaplib.IMAP4.error as exc:
        assert " BAD " in str(exc), exc
        typ = "BAD"
    untagged = {k: [d.decode() if isinstance(d, bytes) else d for d in v]
                for k, v in box.untagged_responses.items()}
    box.untagged_responses.clear()
    return typ, untagged


def enabled_session(srv) -> imaplib.IMAP4:
    box = session(srv)
    typ, untagged = raw(box, "ENABLE", "QRESYNC")
    assert typ == "OK" and untagged["ENABLED"] == ["QRESYNC"], untagged
    return box


def select_state(box) -> tuple[int, int]:
    """SELECT INBOX as a plain client: → (uidvalidity, highestmodseq)."""
    typ, untagged = raw(box, "SELECT", "INBOX")
    assert typ == "OK", untagged
    box.state = "SELECTED"
    return int(untagged["UIDVALIDITY"][0]), int(untagged["HIGHESTMODSEQ"][0])


def fetched(untagged) -> dict[int, tuple[str, int]]:
    """{uid: (flags, modseq)} of the untagged FETCH responses."""
    out = {}
    for data in untagged.get("FETCH", []):
        uid = int(re.search(r"UID (\d+)", data).group(1))
        flags = re.search(r"FLAGS \(([^)]*)\)", data).group(1)
        modseq = int(re.search(r"MODSEQ \((\d+)\)", data).group(1))
        out[uid] = (" ".join(sorted(flags.split())), modseq)
    return out


def change_from_another_session(srv) -> None:
    """Flags of 2 and 3 changed, 4, 5 and 9 expunged, one message appended (UID 11)."""
    other = session(srv)
    other.select("INBOX")
    assert other.uid("STORE", "2", "+FLAGS", r"(\Flagged)")[0] == "OK"
    assert other.uid("STORE", "3", "+FLAGS", r"(\Seen $Work)")[0] == "OK"
    assert other.uid("STORE", "4,5,9", "+FLAGS", r"(\Deleted)")[0] == "OK"
    assert other.expunge()[0] == "OK"
    assert other.append("INBOX", None, None, b"Subject: new\r\n\r\nnew\r\n")[0] == "OK"
    other.logout()


def away_while_another_session_changes(server) -> tuple[imaplib.IMAP4, int, int]:
    """A session that enabled QRESYNC, saw INBOX and unselected it, then the changes
    of :func:`change_from_another_session`: → (session, uidvalidity, modseq seen)."""
    box = enabled_session(server)
    validity, modseq = select_state(box)
    assert raw(box, "UNSELECT")[0] == "OK"
    box.state = "AUTH"
    change_from_another_session(server)
    return box, validity, modseq


def test_select_qresync_tells_exactly_what_vanished_and_changed(server):
    box, validity, modseq = away_while_another_session_changes(server)

    typ, untagged = raw(box, "SELECT", "INBOX", f"(QRESYNC ({validity} {modseq}))")
    assert typ == "OK", untagged
    assert untagged["VANISHED"] == ["(EARLIER) 4:5,9"]
    changed = fetched(untagged)
    assert {uid: flags for uid, (flags, _m) in changed.items()} == {
        2: r"\Flagged", 3: r"$Work \Seen", 11: ""}
    highest = int(untagged["HIGHESTMODSEQ"][0])
    assert all(modseq < m <= highest for _f, m in changed.values())
    assert untagged["EXISTS"] == ["8"]
    box.state = "SELECTED"

    # nothing changed since the HIGHESTMODSEQ just told: nothing to tell
    raw(box, "UNSELECT")
    typ, untagged = raw(box, "SELECT", "INBOX", f"(QRESYNC ({validity} {highest}))")
    assert typ == "OK" and "VANISHED" not in untagged and "FETCH" not in untagged
    box.logout()


def test_select_qresync_known_uids_and_seq_match_data_narrow_the_vanished_set(server):
    box, validity, modseq = away_while_another_session_changes(server)

    typ, untagged = raw(box, "EXAMINE", "INBOX",
                        f"(QRESYNC ({validity} {modseq} 1:5 (1,3 1,3)))")
    assert typ == "OK", untagged
    assert untagged["VANISHED"] == ["(EARLIER) 4:5"]          # 9 is not a known UID
    assert set(fetched(untagged)) == {2, 3, 11}
    box.logout()


def test_select_qresync_with_another_uidvalidity_tells_nothing_of_the_past(server):
    box, validity, modseq = away_while_another_session_changes(server)

    typ, untagged = raw(box, "SELECT", "INBOX", f"(QRESYNC ({validity + 1} {modseq}))")
    assert typ == "OK", untagged
    assert "VANISHED" not in untagged and "FETCH" not in untagged
    assert untagged["UIDVALIDITY"] == [str(validity)]
    assert untagged["EXISTS"] == ["8"]
    box.logout()


def test_qresync_parameter_needs_enable_and_a_well_formed_list(server):
    box = session(server)
    typ, _ = raw(box, "SELECT", "INBOX", "(QRESYNC (1 1))")
    assert typ == "BAD"
    assert raw(box, "ENABLE", "QRESYNC")[0] == "OK"
    for params in ("(QRESYNC (0 1))", "(QRESYNC (1))", "(QRESYNC (1 1 1:*))",
                   "(QRESYNC (1 1 1:5 (1,2 3)))", "(QRESYNC (1 99999999999999999999))",
                   "(QRESYNC 1 1)"):
        typ, _ = raw(box, "SELECT", "INBOX", params)
        assert typ == "BAD", params
    box.logout()


def test_uid_fetch_changedsince_vanished(server):
    box = enabled_session(server)
    _validity, modseq = select_state(box)
    change_from_another_session(server)

    # the changes are told (VANISHED, FETCH, EXISTS) at the next command that may
    typ, untagged = raw(box, "NOOP")
    assert untagged["VANISHED"] == ["4:5,9"], untagged
    assert "EXPUNGE" not in untagged

    typ, untagged = raw(box, "UID", "FETCH", "1:8", "(FLAGS)",
                        f"(CHANGEDSINCE {modseq} VANISHED)")
    assert typ == "OK", untagged
    assert untagged["VANISHED"] == ["(EARLIER) 4:5"]          # 9 is outside 1:8
    assert set(fetched(untagged)) == {2, 3}
    typ, untagged = raw(box, "UID", "FETCH", "1:*", "(FLAGS)",
                        f"(VANISHED CHANGEDSINCE {modseq})")
    assert typ == "OK", untagged
    assert untagged["VANISHED"] == ["(EARLIER) 4:5,9"]
    assert set(fetched(untagged)) == {2, 3, 11}
    assert raw(box, "FETCH", "1:*", "(FLAGS)", f"(CHANGEDSINCE {modseq} VANISHED)")[0] \
        == "BAD"
    assert raw(box, "UID", "FETCH", "1:*", "(FLAGS)", "(VANISHED)")[0] == "BAD"
    box.logout()


def test_expunges_are_vanished_in_idle_and_own_expunge_tells_highestmodseq(server):
    box = enabled_session(server)
    select_state(box)
    other = session(server)
    other.select("INBOX")
    other.uid("STORE", "6", "+FLAGS", r"(\Deleted)")
    other.expunge()

    tag = box._new_tag().decode()
    box.send(f"{tag} IDLE\r\n".encode())
    assert box.readline().startswith(b"+ ")
    line = box.readline()
    while line.startswith(b"* OK"):
        line = box.readline()
    assert line == b"* VANISHED 6\r\n"
    box.send(b"DONE\r\n")
    assert box.readline().startswith(tag.encode() + b" OK")
    other.logout()

    assert raw(box, "UID", "STORE", "7", "+FLAGS", r"(\Deleted)")[0] == "OK"
    box.untagged_responses.clear()
    typ, data = box._simple_command("EXPUNGE")
    assert typ == "OK"
    assert box.untagged_responses["VANISHED"] == [b"7"]
    assert b"[HIGHESTMODSEQ " in data[-1]
    box.logout()


def test_select_of_another_mailbox_says_closed(server):
    box = session(server)
    box.select("INBOX")
    box.untagged_responses.clear()
    typ, _ = box.select("Sent")
    assert typ == "OK"
    assert "CLOSED" in box.untagged_responses
    box.logout()
