"""Postfix 3.7 (Debian's ``postfix``) as its own instance for the SMTP benchmark.

    python bench/peers/postfix.py --workdir DIR [--port N]     # run until Ctrl-C

Debian's binaries are unpacked into ``bench/.cache/root`` (bench/peers/debian.py: ``apt-get
download`` + ``dpkg -x``; nothing installed, no service started; the system's Postfix
is used instead only when the download fails and it is installed). The instance has
its own ``config_directory`` (``DIR/etc``: main.cf and master.cf written here), queue
and data directories under ``DIR``, listens on ``127.0.0.1:<port>`` only (never port
25) and logs to ``DIR/postfix.log`` through postlogd. Nothing is written to
``/etc/postfix``; no chroot.

Mail is for the virtual domain ``example.com``: ``virtual(8)`` delivers every
recipient listed in ``users`` into ``DIR/mail/<user>/Maildir/new``, owned by the
unprivileged user ``nobody``. Everything else is Postfix as shipped: ``postconf -d``
defaults, durable queue files (fsync before the ``250``), fsync of every delivered
Maildir file, ``default_process_limit = 100``, ``smtpd`` reverse lookups.

Postfix refuses to run without its ``mail_owner`` (``postfix``) and ``setgid_group``
(``postdrop``): when this machine has neither, they are created as system accounts
(``groupadd --system postdrop``, ``useradd --system postfix``), and only then.
The master runs as root (as Postfix expects) in the foreground, as the leader of its
own process group; its children drop to ``postfix``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import free_port, maildir_count, stop_process
from bench.peers import debian

PACKAGES = ["postfix"]
DOMAIN = "example.com"
MAIL_OWNER, SETGID_GROUP = "postfix", "postdrop"

# master.cf: the services a virtual-only delivery needs, as Debian's master.cf has
# them but with chroot off ("n" in the fifth column).
SERVICES = """\
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def main_cf(root: Path, workdir: Path, users: list[str], uid: int, gid: int) -> str:
    """main.cf for an instance under ``workdir`` running binaries from ``root``."""
    usr = root / "usr"
    mailboxes = ", ".join(f"{u}={u.split('@')[0]}/Maildir/" for u in users)
    lines = {
        "compatibility_level": "3.6",
        "queue_directory": workdir / "queue",
        "data_directory": workdir / "data",
        "command_directory": usr / "sbin",
        "daemon_directory": usr / "lib/postfix/sbin",
        "shlib_directory": usr / "lib/postfix",
        "meta_directory": root / "etc/postfix",
        "sendmail_path": usr / "sbin/sendmail",
        "newaliases_path": usr / "bin/newaliases",
        "mailq_path": usr / "bin/mailq",
        "manpage_directory": usr / "share/man",
        "html_directory": "no",
        "readme_directory": "no",
        "mail_owner": MAIL_OWNER,
        "setgid_group": SETGID_GROUP,
        "myhostname": "postfix.bench.example.org",
        "mydomain": "bench.example.org",
        "myorigin": "$myhostname",
        "mydestination": "",
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "mynetworks": "127.0.0.0/8",
        "alias_maps": "",
        "alias_database": "",
        "local_recipient_maps": "",
        "relayhost": "",
        "biff": "no",
        "maillog_file": workdir / "postfix.log",
        "maillog_file_prefixes": workdir,
        # The unpacked shared libraries (libpostfix-*.so) are found through this.
        "import_environment": "MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C "
                              "POSTLOG_SERVICE POSTLOG_HOSTNAME LD_LIBRARY_PATH",
        "virtual_mailbox_domains": DOMAIN,
        "virtual_mailbox_base": workdir / "mail",
        "virtual_mailbox_maps": "inline:{ " + mailboxes + " }",
        "virtual_uid_maps": f"static:{uid}",
        "virtual_gid_maps": f"static:{gid}",
        "virtual_minimum_uid": "100",
    }
    return "".join(f"{k} = {v}\n" for k, v in lines.items())


def master_cf(port: int) -> str:
    return f"127.0.0.1:{port} inet n - n - - smtpd\n" + SERVICES


class PostfixPeer:
    """One Postfix instance; ``delivered()`` counts files in the Maildirs' new/."""

    name = "postfix"

    def __init__(self, workdir: Path, users: list[str], port: int | None = None,
                 root: Path | None = None):
        self.workdir = Path(workdir).resolve()
        self.users = users
        self.port = port or free_port()
        self._root = root
        self.proc: subprocess.Popen | None = None

    @property
    def conf(self) -> Path:
        return self.workdir / "etc"

    def maildir(self, user: str) -> Path:
        return self.workdir / "mail" / user.split("@")[0] / "Maildir"

    def env(self) -> dict:
        return dict(os.environ, LD_LIBRARY_PATH=debian.library_path(self.root),
                    MAIL_CONFIG=str(self.conf))

    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = debian.binaries(PACKAGES, "usr/sbin/postfix")
            debian.check_libraries(self._root, ["usr/sbin/postfix",
                                                "usr/lib/postfix/sbin/smtpd"])
        return self._root

    def write_config(self, uid: int, gid: int) -> None:
        self.conf.mkdir(parents=True, exist_ok=True)
        (self.conf / "main.cf").write_text(main_cf(self.root, self.workdir, self.users,
                                                   uid, gid))
        (self.conf / "master.cf").write_text(master_cf(self.port))

    def start(self, timeout: float = 30.0) -> PostfixPeer:
        made = debian.system_account(group=SETGID_GROUP)
        made += debian.system_account(user=MAIL_OWNER)
        if made:
            print(f"postfix peer: created system {', '.join(made)}", flush=True)
        uid, gid = debian.unprivileged_ids()
        self.workdir.mkdir(parents=True, exist_ok=True)
        # virtual(8) runs as nobody: every directory down to the Maildirs is searchable.
        for parent in [self.workdir, *self.workdir.parents]:
            if parent == Path("/"):
                break
            if parent.stat().st_uid == 0 and not parent.stat().st_mode & 0o001:
                parent.chmod(parent.stat().st_mode | 0o011)
        self.write_config(uid, gid)
        for user in self.users:
            box = self.maildir(user)
            for sub in ("tmp", "new", "cur"):
                (box / sub).mkdir(parents=True, exist_ok=True)
            for d in (box.parent.parent, box.parent, box, *(box / s for s in ("tmp", "new",
                                                                              "cur"))):
                os.chown(d, uid, gid)
        (self.workdir / "queue").mkdir(mode=0o755, exist_ok=True)
        postfix = str(self.root / "usr/sbin/postfix")
        # post-install creates the queue directories with Postfix's owners and modes.
        check = subprocess.run([postfix, "-c", str(self.conf), "check"], env=self.env(),
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise debian.PeerUnavailable("postfix check failed: " + self.log_text()[-1500:])
        log = open(self.workdir / "master.out", "ab")
        self.proc = subprocess.Popen(
            [str(self.root / "usr/lib/postfix/sbin/master"), "-c", str(self.conf), "-d"],
            env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid
        debian.wait_for_banner(self, self.port, b"220", b"QUIT\r\n", timeout)
        return self

    def log_text(self) -> str:
        return debian.log_text(self.workdir, ("master.out", "postfix.log"))

    def delivered(self) -> int:
        return sum(maildir_count(self.maildir(u)) for u in self.users)

    def stop(self) -> None:
        if self.proc is None:
            return
        stop_process(self.proc)         # the master passes SIGTERM on to its children


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--user", action="append", default=None)
    args = parser.parse_args()
    peer = PostfixPeer(Path(args.workdir), args.user or [f"bench@{DOMAIN}"], args.port)
    debian.run_until_signalled(peer, "postfix listening on 127.0.0.1:{peer.port}, "
                                     "pid {peer.pid}")


if __name__ == "__main__":
    main()
