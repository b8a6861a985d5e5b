"""``mailet-mta tls-report``: the daily TLS-RPT report (RFC 8460 §4) of what outbound
TLS sessions met, from the counts delivery keeps in the database."""

from __future__ import annotations

import datetime
import json
import time

from .common import CLIError, add_config_argument, open_database


def register(sub) -> None:
    p = sub.add_parser("tls-report",
                       help="print the daily TLS-RPT report (RFC 8460) as JSON")
    p.add_argument("--day", metavar="YYYY-MM-DD",
                   help="the UTC day to report (default: yesterday)")
    p.add_argument("--domain", metavar="DOMAIN",
                   help="one policy domain (default: every domain, as a JSON list)")
    p.add_argument("--organization", metavar="NAME",
                   help="organization-name of the report (default: the server name)")
    p.add_argument("--contact", metavar="ADDRESS",
                   help="contact-info of the report (default: the postmaster)")
    add_config_argument(p)
    p.set_defaults(func=run)


def report_day(text: str | None, now: float | None = None) -> str:
    """``text`` checked as a date, or yesterday (UTC)."""
    if text is None:
        today = datetime.datetime.fromtimestamp(now or time.time(), datetime.UTC).date()
        return (today - datetime.timedelta(days=1)).isoformat()
    try:
        return datetime.date.fromisoformat(text).isoformat()
    except ValueError:
        raise CLIError(f"--day {text!r}: write the date as YYYY-MM-DD") from None


def run(args) -> int:
    from ..delivery.tls_reports import counts, daily_report

    day = report_day(args.day)
    config, db = open_database(args, upgrade=False)
    domain = args.domain.lower().rstrip(".") if args.domain else None
    with db.engine.connect() as conn:
        rows = counts(conn, day, domain)
    organization = args.organization or config.server_name
    contact = args.contact or config.postmaster_address
    domains = sorted({r.policy_domain for r in rows})
    reports = [daily_report([r for r in rows if r.policy_domain == d], day, organization,
                            contact) for d in domains]
    if domain is not None:
        if not reports:
            raise CLIError(f"no TLS sessions with a policy of {domain} were counted on {day}")
        print(json.dumps(reports[0], indent=2))
    else:
        print(json.dumps(reports, indent=2))
    return 0
