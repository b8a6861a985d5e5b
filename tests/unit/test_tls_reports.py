"""TLS-RPT counts (RFC 8460): kept per day, policy domain and result in the database,
old days pruned, and the daily JSON report of §4 printed by ``mailet-mta tls-report``."""

from __future__ import annotations

import json
import subprocess

import yaml

from mailet_mta.delivery import tls_reports
from mailet_mta.storage.db import Database, default_url


def fill(db_url: str, rows) -> Database:
    db = Database(db_url)
    db.upgrade()
    with db.engine.begin() as conn:
        for day, domain, ptype, result, mx, n in rows:
            tls_reports.count(conn, day, domain, ptype, result, mx, n)
    return db


ROWS = [
    ("2026-12-02", "a.test", "sts", "success", "", 7),
    ("2026-12-02", "a.test", "sts", "success", "", 3),            # adds to the same row
    ("2026-12-02", "a.test", "sts", "validation-failure", "mx1.a.test", 2),
    ("2026-12-02", "b.test", "tlsa", "starttls-not-supported", "mx.b.test", 1),
    ("2026-12-01", "a.test", "sts", "success", "", 99),           # another day
]


def test_counts_add_up_and_make_the_rfc_8460_report(tmp_path):
    db = fill("sqlite:///" + str(tmp_path / "r.db"), ROWS)
    with db.engine.connect() as conn:
        rows = tls_reports.counts(conn, "2026-12-02", "a.test")
    report = tls_reports.daily_report(rows, "2026-12-02", "mx.example.net",
                                      "postmaster@example.net")
    assert report == {
        "organization-name": "mx.example.net",
        "date-range": {"start-datetime": "2026-12-02T00:00:00Z",
                       "end-datetime": "2026-12-03T00:00:00Z"},
        "contact-info": "postmaster@example.net",
        "report-id": "2026-12-02_mx.example.net",
        "policies": [{
            "policy": {"policy-type": "sts", "policy-domain": "a.test"},
            "summary": {"total-successful-session-count": 10,
                        "total-failure-session-count": 2},
            "failure-details": [{"result-type": "validation-failure",
                                 "failed-session-count": 2,
                                 "receiving-mx-hostname": "mx1.a.test"}]}],
    }


def test_days_older_than_the_limit_are_pruned(tmp_path):
    db = fill("sqlite:///" + str(tmp_path / "r.db"), ROWS)
    with db.engine.begin() as conn:
        tls_reports.prune(conn, "2027-01-02")                      # keeps 31 days
        assert tls_reports.counts(conn, "2026-12-01") == []
        assert len(tls_reports.counts(conn, "2026-12-02")) == 3


def test_long_names_are_cut_to_the_column_size(tmp_path):
    db = fill("sqlite:///" + str(tmp_path / "r.db"),
              [("2026-12-02", "d" * 400, "sts", "success", "m" * 400, 1)])
    with db.engine.connect() as conn:
        [row] = tls_reports.counts(conn, "2026-12-02")
    assert len(row.policy_domain) == len(row.mx_host) == tls_reports.MAX_FIELD


def run_cli(tmp_path, capsys, *argv):
    """``mailet-mta tls-report ARGV`` run by the command's own main, in this process."""
    from mailet_mta.cli import main

    config = {"servernames": ["mx.example.net"],
              "storage": {"data_dir": str(tmp_path / "var")}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = ["tls-report", *argv, "--config", str(path)]
    code = main(argv)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(argv, code, out, err)


def test_cli_prints_the_report_of_one_domain_and_of_all(tmp_path, capsys):
    (tmp_path / "var").mkdir()
    fill(default_url(str(tmp_path / "var")), ROWS)
    out = run_cli(tmp_path, capsys, "--day", "2026-12-02", "--domain", "b.test")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["policies"][0]["policy"] == {"policy-type": "tlsa", "policy-domain": "b.test"}
    assert report["contact-info"] == "postmaster@mx.example.net"
    out = run_cli(tmp_path, capsys, "--day", "2026-12-02")
    assert [r["policies"][0]["policy"]["policy-domain"] for r in json.loads(out.stdout)] == \
        ["a.test", "b.test"]
    out = run_cli(tmp_path, capsys, "--day", "2 Dec")
    assert out.returncode == 1 and "YYYY-MM-DD" in out.stderr
    out = run_cli(tmp_path, capsys, "--day", "2026-12-02", "--domain", "c.test")
    assert out.returncode == 1 and "c.test" in out.stderr
