"""The benchmark scripts' argument parsing and peer configurations (no network, no peers).

The benchmarks are not run by the test suite (machine speed must not fail CI), so
these keep them from rotting: each script parses its arguments, and the Postfix and
Dovecot instances' configuration files say what the benchmarks rely on (loopback
only, own directories, the Maildir owner, no TLS).
"""

from __future__ import annotations

import os
import socketserver
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from argon2.exceptions import VerifyMismatchError

from mailet_mta.storage import passwords

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench import common, imap, pop3, smtp  # noqa: E402
from bench.peers import debian, dovecot, postfix  # noqa: E402


def test_smtp_arguments_default_to_every_server_with_postfix_and_shipped_mode():
    args = smtp.build_parser().parse_args([])
    assert args.servers == ["mailet-mta", "mailet-mta-shipped", "postfix", "aiosmtpd",
                            "twisted"]
    args = smtp.build_parser().parse_args(["--servers", "postfix,mailet-mta-shipped",
                                           "--quick"])
    assert args.servers == ["postfix", "mailet-mta-shipped"] and args.quick


def test_smtp_arguments_refuse_an_unknown_server(capsys):
    with pytest.raises(SystemExit):
        smtp.build_parser().parse_args(["--servers", "postfix,exim"])
    assert "unknown server exim" in capsys.readouterr().err


def test_smtp_shipped_configuration_is_the_shipped_file_on_loopback(tmp_path):
    config = smtp.shipped_config(tmp_path / "var")
    assert config["logging"]["level"] == "info"
    assert config["storage"]["data_dir"] == str(tmp_path / "var")
    assert [s["name"] for s in config["smtpservers"]] == ["smtp"]
    assert [s["name"] for s in config["pop3servers"]] == ["pop3"]
    for listener in config["smtpservers"] + config["pop3servers"]:
        assert listener["listen"] == "tcp:0:interface=127.0.0.1"
        assert "tls" not in listener
    # Everything else is as shipped: its spool threads and its pipeline.
    import yaml
    shipped = yaml.safe_load((ROOT / "conf/mailet-mta.yaml").read_text())
    assert config["spoolmanager"] == shipped["spoolmanager"]
    assert config["smtpservers"][0]["maxmessagesize"] == "50m"


def test_smtp_ratio_and_targets_are_judged_against_postfix():
    cell = {"rate": 100.0, "accept_rate": 1, "p50_ms": 1, "p99_ms": 15.0, "cpu_us": 1,
            "errors": 0}
    results = {"mailet-mta": {"1024x16": [dict(cell, rate=300.0, ratio_postfix=3.0)]},
               "postfix": {"1024x16": [dict(cell, ratio_postfix=1.0)]}}
    summary = smtp.summarize(results)
    met = smtp.targets_met(summary, None, None, [1024], [16])
    assert met["mailet-mta rate 1024x16 >= 2.0x postfix"] == {"ratio": 3.0, "met": True}
    assert met["mailet-mta p99 1024x16 <= 20 ms"]["met"] is True


def test_pop3_and_imap_arguments_parse():
    args = pop3.build_parser().parse_args(["--servers", "dovecot", "--quick"])
    assert args.servers == ["dovecot"]
    assert pop3.build_parser().parse_args([]).servers == ["mailet-mta", "dovecot",
                                                          "twisted"]
    args = imap.build_parser().parse_args(["--servers", "dovecot,mailet-mta",
                                           "--sizes", "100,1000"])
    assert args.servers == ["dovecot", "mailet-mta"] and args.sizes == [100, 1000]
    with pytest.raises(SystemExit):
        imap.build_parser().parse_args(["--servers", "cyrus"])


def test_postfix_instance_configuration(tmp_path):
    root = tmp_path / "root"
    main = postfix.main_cf(root, tmp_path / "pf", ["bench@example.com"], 65534, 65534)
    settings = dict(line.split(" = ", 1) for line in main.splitlines())
    assert settings["inet_interfaces"] == "127.0.0.1"
    assert settings["queue_directory"] == str(tmp_path / "pf/queue")
    assert settings["daemon_directory"] == str(root / "usr/lib/postfix/sbin")
    assert settings["virtual_mailbox_maps"] == "inline:{ bench@example.com=bench/Maildir/ }"
    assert settings["virtual_uid_maps"] == "static:65534"
    assert "LD_LIBRARY_PATH" in settings["import_environment"]
    # Durability stays as shipped: nothing here turns fsync off.
    assert not any("fsync" in k or "sync" in v for k, v in settings.items())
    master = postfix.master_cf(2525)
    first = master.splitlines()[0].split()
    assert first[:2] == ["127.0.0.1:2525", "inet"] and first[-1] == "smtpd"
    assert ":25 " not in master
    # Every service runs without chroot (column 5 is "n").
    assert all(line.split()[4] == "n" for line in master.splitlines())


def test_dovecot_instance_configuration(tmp_path):
    text = dovecot.dovecot_conf(tmp_path, 11110, 11143, 998, 997)
    assert f"base_dir = {tmp_path / 'run'}" in text
    # One mail user owns every Maildir, and it is the only uid a login may use.
    for line in ("mail_uid = 998", "mail_gid = 997", "first_valid_uid = 998",
                 "last_valid_uid = 998", "protocols = pop3 imap lmtp",
                 "auth_cache_size = 10M", "mail_fsync = optimized"):
        assert line in text.splitlines()
    # Only LMTP (the unmeasured fill) skips fsync.
    assert text.count("mail_fsync = never") == 1
    assert "protocol lmtp {\n  mail_fsync = never" in text
    assert "listen = 127.0.0.1" in text and "ssl = no" in text
    assert "port = 11110" in text and "port = 11143" in text
    assert "inet_listener pop3s {\n    port = 0" in text
    assert "inet_listener imaps {\n    port = 0" in text
    assert text.count("{") == text.count("}")
    line = dovecot.passwd_line("a@example.com", "pw", tmp_path / "a", 65534, 65534,
                               "plain")
    assert line == f"a@example.com:{{PLAIN}}pw:65534:65534::{tmp_path / 'a'}::\n"


def test_dovecot_passwords_are_argon2id_at_mailet_mtas_cost_with_one_lane(tmp_path):
    line = dovecot.passwd_line("a@example.com", "pw", tmp_path / "a", 65534, 65534)
    user, stored, uid, gid, _gecos, home, _shell, end = line.split(":")
    assert (user, uid, gid, home, end) == ("a@example.com", "65534", "65534",
                                           str(tmp_path / "a"), "\n")
    assert stored.startswith("{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$")
    phc = stored.removeprefix("{ARGON2ID}")
    assert PasswordHasher().verify(phc, "pw")
    with pytest.raises(VerifyMismatchError):
        PasswordHasher().verify(phc, "other")
    # The memory and time cost are mailet-mta's own.
    assert (passwords.MEMORY_COST, passwords.TIME_COST) == (19456, 2)
    with pytest.raises(ValueError):
        dovecot.passwd_line("a@example.com", "pw", tmp_path / "a", 1, 1, "md5")
    for script in (pop3, imap):
        assert script.build_parser().parse_args([]).dovecot_scheme == "argon2id"
        assert script.build_parser().parse_args(
            ["--dovecot-scheme", "plain"]).dovecot_scheme == "plain"


def test_overlay_command_mounts_each_directory_read_only_in_a_private_namespace(tmp_path):
    cmd = debian.overlay_command(tmp_path, ["/usr/sbin/dovecot", "-F"])
    assert cmd[:4] == ["unshare", "--mount", "--propagation", "private"]
    assert f"lowerdir={tmp_path}/usr/lib:/usr/lib /usr/lib" in cmd[6]
    assert cmd[-2:] == ["/usr/sbin/dovecot", "-F"]
    assert debian.overlay_command(Path("/"), ["x"]) == ["x"]


def test_cached_binaries_are_reused_without_downloading(tmp_path):
    root = tmp_path / "root"
    (root / ".unpacked").mkdir(parents=True)
    (root / ".unpacked" / "postfix").write_text("postfix.deb\n")
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/sbin/postfix").write_text("")
    assert debian.binaries(["postfix"], "usr/sbin/postfix", cache=tmp_path) == root


def test_tree_cpu_counts_exited_children():
    before = common.tree_cpu_seconds(os.getpid())
    subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"],
                   check=True)
    after = common.tree_cpu_seconds(os.getpid())
    assert after - before >= 0.05
    assert os.getpid() in common.process_tree(os.getpid())


def test_smtp_baseline_checkout_runs_one_process_like_this_one(tmp_path):
    """An A/B run compares one process with one process: a baseline checkout that
    knows ``workers`` (default: one per core) is told 1; an older one is not told."""
    import yaml

    def workers_of(code):
        target = smtp.MailetTarget(tmp_path / code.name, code=code)
        return yaml.safe_load(target.server.config_path.read_text()).get("workers")

    older = tmp_path / "older"
    (older / "mailet_mta" / "config").mkdir(parents=True)
    (older / "mailet_mta" / "config" / "model.py").write_text("class Config:\n    x: int\n")
    assert workers_of(ROOT) == 1
    assert workers_of(older) is None


def test_smtp_database_option_names_a_postgresql_url():
    args = smtp.build_parser().parse_args(
        ["--database", "postgresql+psycopg://postgres@127.0.0.1:5432/test"])
    assert args.database.startswith("postgresql")
    assert smtp.build_parser().parse_args([]).database is None


def _dovecot_name_hash(name: str) -> int:
    """Dovecot's maildir_filename_base_hash (ASU/PJW) of a Maildir file name."""
    h = 0
    for c in name.split(":")[0]:
        h = ((h << 4) + ord(c)) & 0xFFFFFFFF
        g = h & 0xF0000000
        if g:
            h ^= (g >> 24) ^ g
    return h


def test_pop3_maildir_names_spread_over_dovecots_filename_hash(tmp_path):
    pop3.fill_maildir(tmp_path, "u@example.com", 2000, True)
    names = os.listdir(tmp_path / "u@example.com" / "new")
    assert len(names) == 2000
    buckets = len({_dovecot_name_hash(n) for n in names})
    assert buckets > 1900, buckets   # the earlier names: 1,002 here, 1,002 for 10,000


def test_pop3_targets_with_two_sizes_judge_retr_and_list():
    cell = {"login_ms": 20, "stat_ms": 0.2, "list_ms": 0.8, "uidl_ms": 1, "retr_per_s": 3000}
    ref = dict(cell, retr_per_s=2000)
    summary = {"1000": {"mailet-mta": cell, "dovecot": ref},
               "10000": {"mailet-mta": cell, "dovecot": ref}}
    met = pop3.targets_met(summary, [1000, 10000])
    assert met["RETR 10000 >= 1.0x dovecot"] == {"ratio": 1.5, "met": True}
    assert met["LIST at 10000 < 5 ms"]["met"]
    assert not any("STAT/LIST" in key for key in met)
    runs = {"1000": {"mailet-mta": [{"retr_per_s": 3000}, {"retr_per_s": 1000}],
                     "dovecot": [{"retr_per_s": 2000}, {"retr_per_s": 2000}]}}
    assert pop3.repeat_ratios(runs) == {"1000": [1.5, 0.5]}



class LMTPRecorder(socketserver.StreamRequestHandler):
    """A minimal LMTP server (RFC 2033) that keeps each transaction's commands and data."""

    transactions: list[dict] = []

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self.reply("220 lmtp ready")
        current: dict = {"commands": []}
        while line := self.rfile.readline():
            verb = line.split(b" ", 1)[0].strip().upper()
            current["commands"].append(line.strip().decode())
            if verb == b"LHLO":
                self.reply("250-localhost")
                self.reply("250 PIPELINING")
            elif verb == b"DATA":
                self.reply("354 go ahead")
                data = b""
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    data += chunk
                current["data"] = data
                self.transactions.append(current)
                current = {"commands": []}
                for _ in range(sum(c.upper().startswith("RCPT") for c in
                                   self.transactions[-1]["commands"])):
                    self.reply("250 2.0.0 saved")
            elif verb == b"QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("250 ok")


def test_imap_push_to_dovecot_goes_through_its_lmtp_socket(tmp_path):
    """The IDLE push reaches Dovecot as an MTA hands it mail: one LMTP transaction on
    the instance's ``run/lmtp`` socket, nothing dropped into the Maildir behind it."""
    (tmp_path / "run").mkdir()
    server = socketserver.ThreadingUnixStreamServer(str(tmp_path / "run" / "lmtp"),
                                                    LMTPRecorder)
    LMTPRecorder.transactions = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        target = imap.DovecotIMAP(tmp_path, {"r10@example.com": (10, False)})
        target.deliver("r10@example.com", 3)
    finally:
        server.shutdown()
        server.server_close()
    [done] = LMTPRecorder.transactions
    lhlo, mail, rcpt, data = done["commands"]
    assert lhlo.upper().startswith("LHLO ") and data.upper() == "DATA"
    assert mail.upper().startswith(f"MAIL FROM:<{pop3.SENDER.upper()}>")
    assert rcpt.upper() == "RCPT TO:<R10@EXAMPLE.COM>"
    assert b"Subject: pop3 bench 1000003" in done["data"]
    assert not list(tmp_path.glob("mail/*/Maildir/new/*"))
