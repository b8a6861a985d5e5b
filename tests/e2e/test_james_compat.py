"""A James administrator brings their configuration: James 3's conf/ files run a real
server that delivers to a local mailbox, and check-config reports every error of a
file in one run."""

from __future__ import annotations

import email
import poplib
import shutil
import smtplib
import subprocess
import sys
from pathlib import Path

from tests.support.server import ROOT, ServerProcess, _env, wait_for

JAMES3 = ROOT / "conf" / "examples" / "james3"
PASSWORD = "s3cret-pass"


def james_conf(tmp_path: Path) -> Path:
    """conf/examples/james3 with its listeners moved to 127.0.0.1 on free ports."""
    conf = tmp_path / "conf"
    shutil.copytree(JAMES3, conf)
    for name, port in (("smtpserver.xml", "25"), ("pop3server.xml", "110")):
        path = conf / name
        text = path.read_text()
        assert f"<bind>0.0.0.0:{port}</bind>" in text
        path.write_text(text.replace(f"<bind>0.0.0.0:{port}</bind>",
                                     "<bind>127.0.0.1:0</bind>"))
    return conf


def check_config(tmp_path, target) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailet_mta", "check-config", str(target)],
                          capture_output=True, text=True, cwd=tmp_path, env=_env(),
                          timeout=60)


def test_james3_conf_directory_runs_a_server_that_delivers_locally(tmp_path):
    srv = ServerProcess(tmp_path, config_path=james_conf(tmp_path))
    srv.add_user("alice@example.com", PASSWORD)
    with srv:
        with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=10) as client:
            refused = client.sendmail(
                "carol@example.org", ["alice@example.com"],
                b"From: carol@example.org\r\nTo: alice@example.com\r\n"
                b"Subject: from James\r\n\r\nHello.\r\n")
        assert refused == {}

        def messages():
            box = poplib.POP3("127.0.0.1", srv.port("pop3"), timeout=10)
            try:
                box.user("alice@example.com")
                box.pass_(PASSWORD)
                return [b"\r\n".join(box.retr(i + 1)[1])
                        for i in range(box.stat()[0])]
            finally:
                box.quit()

        (raw,) = wait_for(messages, timeout=30, what="the mail in alice's mailbox")
    parsed = email.message_from_bytes(raw)
    assert parsed["Subject"] == "from James"
    # AddDeliveredToHeader before LocalDelivery: one Delivered-To, not two.
    assert parsed.get_all("Delivered-To") == ["alice@example.com"]


def test_check_config_reports_a_james_class_we_lack_naming_its_line(tmp_path):
    conf = james_conf(tmp_path)
    path = conf / "mailetcontainer.xml"
    lines = path.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if 'class="AddDeliveredToHeader"' in line)
    lines[index] = ('            <mailet match="org.apache.james.transport.matchers.'
                    'IsOverQuota" class="org.apache.james.transport.mailets.Sieve"/>')
    path.write_text("\n".join(lines) + "\n")
    result = check_config(tmp_path, conf)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    where = f"{path}:{index + 1}"
    assert f'{where}: match="org.apache.james.transport.matchers.IsOverQuota": ' \
           f"mailet-mta has no matcher IsOverQuota" in result.stderr
    assert f'{where}: class="org.apache.james.transport.mailets.Sieve": ' \
           f"mailet-mta has no mailet Sieve" in result.stderr


BROKEN = """\
<config>
  <James>
    <servernames autodetect="false"><servername>example.com</servername></servernames>
  </James>
  <spoolmanager>
    <threads>lots</threads>
    <processor name="root">
      <mailet match="All" class="ToProcessor"><processor>trasport</processor></mailet>
      <mailet match="All" class="NoSuchMailet"/>
    </processor>
    <processor name="error">
      <mailet match="All" class="Null"/>
    </processor>
  </spoolmanager>
  <smtpserver>
    <port>2525</port>
    <maxmessagesize>huge</maxmessagesize>
    <authRequired>sometimes</authRequired>
  </smtpserver>
</config>
"""


def test_check_config_prints_every_error_of_the_file_then_fails(tmp_path):
    path = tmp_path / "broken.xml"
    path.write_text(BROKEN)
    result = check_config(tmp_path, path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "mailet-mta: configuration error: 5 errors:"
    assert [line.split(": ", 1)[0] for line in lines[1:]] == [
        f"{path}:6", f"{path}:17", f"{path}:18", f"{path}:8", f"{path}:9"]
    assert "threads must be a whole number" in lines[1]
    assert "maxmessagesize must be a size" in lines[2]
    assert "authRequired must be true, false or announce" in lines[3]
    assert "names processor 'trasport'" in lines[4]
    assert "unknown mailet 'NoSuchMailet'" in lines[5]


def test_check_config_prints_unit_warnings_and_passes(tmp_path):
    path = tmp_path / "units.yaml"
    path.write_text("servernames: [example.com]\nsmtpservers:\n  - listen: tcp:2525\n"
                    "    maxmessagesize: 10240\n    connectiontimeout: 300\n")
    result = check_config(tmp_path, path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2
    assert warnings[0].startswith(f"warning: {path}:4: smtpserver.maxmessagesize: 10240 "
                                  f"has no unit and is read as 10240 KiB (10 MiB)")
    assert warnings[1].startswith(f"warning: {path}:5: smtpserver.connectiontimeout")


def test_serve_prints_every_error_of_the_file_and_does_not_start(tmp_path):
    path = tmp_path / "broken.xml"
    path.write_text(BROKEN)
    result = subprocess.run([sys.executable, "-m", "mailet_mta", "serve", "--config",
                             str(path)], capture_output=True, text=True, cwd=tmp_path,
                            env=_env(), timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"mailet-mta: configuration error: {path}:6: ")
    assert [line.split(": ", 1)[0] for line in lines[1:]] == [
        f"{path}:17", f"{path}:18", f"{path}:8"]
    assert not (tmp_path / "var").exists()
