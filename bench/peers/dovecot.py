"""Dovecot 2.3 (Debian's ``dovecot-core``, ``-pop3d``, ``-imapd``, ``-lmtpd``), own instance.

    python bench/peers/dovecot.py --workdir DIR [--pop3-port N] [--imap-port N]
        [--scheme argon2id|plain]

Debian's binaries are unpacked into ``bench/.cache/root`` (bench/peers/debian.py:
``apt-get download`` + ``dpkg -x``; nothing installed, no service started; the
system's Dovecot is used instead only when the download fails and it is installed).
The instance has its own configuration file ``DIR/dovecot.conf``, ``base_dir`` and
``state_dir`` under ``DIR``, listens on 127.0.0.1 only (POP3 and IMAP, no TLS) and
logs to ``DIR/dovecot.log``. Dovecot looks for its helpers at compiled-in paths
(``/usr/bin/doveconf``, ``/usr/lib/dovecot/modules``…), so the master runs in a
private mount namespace where the unpacked ``/usr/lib``, ``/usr/bin`` and ``/usr/sbin``
are read-only overlays over the system's (``debian.overlay_command``; the system's
mounts are not changed).

Users come from a ``passwd-file`` (``{ARGON2ID}`` hashes by default, ``{PLAIN}`` on
request: :func:`passwd_line`); their Maildirs at
``DIR/mail/<user>/Maildir`` belong to one mail user, ``vmail`` (``mail_uid``/
``mail_gid``, the only uid ``first_valid_uid``..``last_valid_uid`` admits), as in an
installation for virtual users. Dovecot refuses to run without its
``default_internal_user`` (``dovecot``) and ``default_login_user`` (``dovenull``):
when missing, they and ``vmail`` are created as system users (``useradd --system``),
and only then. Mail is delivered through Dovecot's LMTP (:meth:`DovecotPeer.deliver`,
the socket ``DIR/run/lmtp``), so Dovecot names, stores and indexes it itself (uidlist,
``dovecot.index``, ``dovecot.index.cache``). Settings are Dovecot's defaults otherwise
(indexes in the Maildir, ``mail_fsync = optimized``, ``pop3_uidl_format =
%08Xu%08Xv``, written out), plus ``auth_cache_size = 10M``; ``mail_fsync = never``
and no ``Received:`` header for LMTP alone (filling is not measured; so Dovecot's
copies hold the other servers' bytes); ``mail_max_userip_connections = 1000`` for IMAP
(default 10): the memory figure holds many sessions of one user from 127.0.0.1.
"""

from __future__ import annotations

import argparse
import os
import pwd
import smtplib
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import free_port, stop_process
from bench.peers import debian

PACKAGES = ["dovecot-core", "dovecot-pop3d", "dovecot-imapd", "dovecot-lmtpd"]
INTERNAL_USER, LOGIN_USER, MAIL_USER = "dovecot", "dovenull", "vmail"
SCHEMES = ("argon2id", "plain")
# mailet-mta's memory and time cost (mailet_mta/storage/passwords.py); one lane, as
# libsodium, which Dovecot's {ARGON2ID} verifies with, handles parallelism 1 only.
ARGON2_MEMORY_KIB, ARGON2_TIME_COST, ARGON2_PARALLELISM = 19456, 2, 1


def mail_ids() -> tuple[int, int]:
    """uid and gid of the mail user (``vmail``, made by :meth:`DovecotPeer.start`)."""
    entry = pwd.getpwnam(MAIL_USER)
    return entry.pw_uid, entry.pw_gid


def dovecot_conf(workdir: Path, pop3_port: int, imap_port: int,
                 mail_uid: int, mail_gid: int) -> str:
    """The instance's dovecot.conf (state, logs and mail under ``workdir``).

    Laid out as an installation for virtual users is: one mail user owns every
    Maildir (``mail_uid``/``mail_gid``, the only uid ``first_valid_uid`` ..
    ``last_valid_uid`` admits), index and control files in the Maildir (the default
    ``INDEX``/``CONTROL``, writable by that user), the shipped defaults for
    ``mail_fsync`` (optimized), ``pop3_uidl_format`` and the cache, and the passdb
    answers cached (``auth_cache_size``) as an installation with many logins sets it.
    """
    lines = [
        f"base_dir = {workdir / 'run'}",
        f"state_dir = {workdir / 'state'}",
        f"instance_name = bench-{pop3_port}",
        "protocols = pop3 imap lmtp",
        "listen = 127.0.0.1",
        "ssl = no",
        "disable_plaintext_auth = no",
        "auth_mechanisms = plain",
        f"default_internal_user = {INTERNAL_USER}",
        f"default_internal_group = {INTERNAL_USER}",
        f"default_login_user = {LOGIN_USER}",
        f"log_path = {workdir / 'dovecot.log'}",
        "mail_location = maildir:~/Maildir",
        f"mail_uid = {mail_uid}",
        f"mail_gid = {mail_gid}",
        f"first_valid_uid = {mail_uid}",
        f"last_valid_uid = {mail_uid}",
        f"first_valid_gid = {mail_gid}",
        f"last_valid_gid = {mail_gid}",
        "mail_fsync = optimized",
        "pop3_uidl_format = %08Xu%08Xv",
        "auth_cache_size = 10M",
        f"passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN {workdir / 'passwd'}\n}}",
        f"userdb {{\n  driver = passwd-file\n  args = {workdir / 'passwd'}\n}}",
        # Mail comes in through LMTP (socket base_dir/lmtp), which adds Return-Path and
        # Delivered-To, the lines the other servers' copies start with; no Received
        # line, so every server holds the same bytes. Filling is not measured: the
        # deliveries alone skip fsync; POP3 and IMAP keep the shipped mail_fsync.
        "protocol lmtp {\n  mail_fsync = never\n  lmtp_add_received_header = no\n}",
        # The memory figure holds many sessions of one user from 127.0.0.1 (default 10).
        "protocol imap {\n  mail_max_userip_connections = 1000\n}",
    ]
    for service, (name, port) in {"pop3-login": ("pop3", pop3_port),
                                  "imap-login": ("imap", imap_port)}.items():
        lines.append(f"service {service} {{\n  inet_listener {name} {{\n"
                     f"    address = 127.0.0.1\n    port = {port}\n  }}\n"
                     f"  inet_listener {name}s {{\n    port = 0\n  }}\n}}")
    return "\n".join(lines) + "\n"


def argon2id_phc(password: str) -> str:
    """An argon2id PHC string for ``password``: m=19456 KiB, t=2, p=1.

    The memory and time cost are mailet-mta's (mailet_mta/storage/passwords.py), so
    a Dovecot login pays a key derivation of the same size as a mailet-mta login.
    The parallelism is 1, not mailet-mta's 2: Dovecot's ``{ARGON2ID}`` scheme checks
    the hash with libsodium's ``crypto_pwhash_str_verify``, and libsodium implements
    argon2 with one lane only (it rejects a PHC string with ``p=2``). One lane does
    the same work as two, on one core (about 34 ms against mailet-mta's 21 ms with
    argon2-cffi on the reference machine).
    """
    from argon2 import PasswordHasher, Type

    hasher = PasswordHasher(time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB,
                            parallelism=ARGON2_PARALLELISM, hash_len=32, salt_len=16,
                            type=Type.ID)
    return hasher.hash(password)


def passwd_line(user: str, password: str, home: Path, uid: int, gid: int,
                scheme: str = "argon2id") -> str:
    """One ``passwd-file`` line: ``{ARGON2ID}`` + PHC string, or ``{PLAIN}`` + password."""
    if scheme == "plain":
        stored = f"{{PLAIN}}{password}"
    elif scheme == "argon2id":
        stored = f"{{ARGON2ID}}{argon2id_phc(password)}"
    else:
        raise ValueError(f"unknown password scheme {scheme!r} (one of {SCHEMES})")
    return f"{user}:{stored}:{uid}:{gid}::{home}::\n"


class DovecotPeer:
    """One Dovecot instance serving POP3 and IMAP for the users given."""

    name = "dovecot"

    def __init__(self, workdir: Path, users: dict[str, str], pop3_port: int | None = None,
                 imap_port: int | None = None, root: Path | None = None,
                 scheme: str = "argon2id"):
        self.workdir = Path(workdir).resolve()
        self.users = users                  # address → password
        self.scheme = scheme                # how the passwd-file stores them
        self.pop3_port = pop3_port or free_port()
        self.imap_port = imap_port or free_port()
        self._root = root
        self.proc: subprocess.Popen | None = None
        self.uid = self.gid = -1           # the mail user's, known once start() made it

    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = debian.binaries(PACKAGES, "usr/sbin/dovecot")
            debian.check_libraries(self._root, ["usr/sbin/dovecot", "usr/lib/dovecot/pop3",
                                                "usr/lib/dovecot/imap"])
        return self._root

    def home(self, user: str) -> Path:
        return self.workdir / "mail" / user.split("@")[0]

    def maildir(self, user: str) -> Path:
        """The user's Maildir, created (tmp/new/cur) on first call."""
        box = self.home(user) / "Maildir"
        for sub in ("tmp", "new", "cur"):
            (box / sub).mkdir(parents=True, exist_ok=True)
        return box

    def own_mail(self) -> None:
        """Hand every mailbox file to the mail user (after filling them as root)."""
        for dirpath, _dirnames, filenames in os.walk(self.workdir / "mail"):
            os.chown(dirpath, self.uid, self.gid)
            for name in filenames:
                os.chown(os.path.join(dirpath, name), self.uid, self.gid)

    def deliver(self, user: str, messages: Iterable[bytes], sender: str) -> int:
        """Deliver ``messages`` to ``user``'s INBOX through Dovecot's LMTP; how many.

        One LMTP session on the instance's ``lmtp`` socket, one transaction per
        message, as an MTA hands mail to Dovecot: Dovecot names each file
        (``<time>.M<usecs>P<pid>.<host>`` with ``,S=`` its physical and ``,W=`` its
        CRLF size), stores it with its own line ends and updates the uidlist, the
        index and the cache.
        """
        count = 0
        lmtp = smtplib.LMTP(str(self.workdir / "run" / "lmtp"))
        try:
            lmtp.ehlo("localhost")
            for data in messages:
                lmtp.sendmail(sender, [user], data)
                count += 1
        finally:
            lmtp.quit()
        return count

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "dovecot.conf"
        conf.write_text(dovecot_conf(self.workdir, self.pop3_port, self.imap_port,
                                     self.uid, self.gid))
        (self.workdir / "passwd").write_text("".join(
            passwd_line(u, p, self.home(u), self.uid, self.gid, self.scheme)
            for u, p in self.users.items()))
        return conf

    def start(self, timeout: float = 30.0) -> DovecotPeer:
        made = debian.system_account(user=INTERNAL_USER)
        made += debian.system_account(user=LOGIN_USER)
        made += debian.system_account(user=MAIL_USER)
        self.uid, self.gid = mail_ids()
        if made:
            print(f"dovecot peer: created system {', '.join(made)}", flush=True)
        for parent in [self.workdir, *self.workdir.parents]:
            if parent == Path("/"):
                break
            if parent.exists() and not parent.stat().st_mode & 0o001:
                parent.chmod(parent.stat().st_mode | 0o011)
        conf = self.write_config()
        for user in self.users:
            self.maildir(user)
        self.own_mail()
        cmd = debian.overlay_command(self.root, ["/usr/sbin/dovecot", "-F", "-c", str(conf)])
        log = open(self.workdir / "master.out", "ab")
        self.proc = subprocess.Popen(cmd, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid
        debian.wait_for_banner(self, self.pop3_port, b"+OK", b"QUIT\r\n", timeout)
        return self

    def log_text(self) -> str:
        return debian.log_text(self.workdir, ("master.out", "dovecot.log"))

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)         # the master stops its children on SIGTERM


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--pop3-port", type=int, default=None)
    parser.add_argument("--imap-port", type=int, default=None)
    parser.add_argument("--user", action="append", default=None, metavar="ADDRESS:PASSWORD")
    parser.add_argument("--scheme", choices=SCHEMES, default="argon2id",
                        help="how the passwords are stored (default argon2id)")
    args = parser.parse_args()
    users = dict(u.split(":", 1) for u in (args.user or ["bench@example.com:bench"]))
    peer = DovecotPeer(Path(args.workdir), users, args.pop3_port, args.imap_port,
                       scheme=args.scheme)
    debian.run_until_signalled(peer, "dovecot: pop3 127.0.0.1:{peer.pop3_port}, imap "
                                     "127.0.0.1:{peer.imap_port}, pid {peer.pid}")


if __name__ == "__main__":
    main()
