"""TLS-RPT (RFC 8460): what outbound TLS sessions met, counted for the daily report.

Delivery counts one session per connection to a destination that has a policy
(MTA-STS ``sts`` or DANE ``tlsa``): ``success``, or the failure's result type of
§4.3 (``starttls-not-supported``, ``validation-failure``, ``sts-policy-fetch-error``,
…) with the MX host. Counts live in the database (``tls_report_counts``), one row per
UTC day, policy domain, policy type, result type and MX host, so every process adds to
the same report; rows older than ``KEEP_DAYS`` are dropped. ``daily_report`` builds
the JSON report of §4 for one policy domain and day.
"""

from __future__ import annotations

import datetime
from typing import Any

from sqlalchemy import and_, delete, insert, select, update

from ..storage.schema import tls_report_counts as T

KEEP_DAYS = 31
POLICY_TYPES = ("sts", "tlsa", "no-policy-found")
RESULT_TYPES = ("starttls-not-supported", "certificate-host-mismatch",
                "certificate-expired", "certificate-not-trusted", "validation-failure",
                "tlsa-invalid", "dnssec-invalid", "dane-required",
                "sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid")
MAX_FIELD = 255


def day_of(when: float) -> str:
    """The UTC day of the timestamp ``when``, as ``YYYY-MM-DD``."""
    return datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%d")


def count(conn, day: str, policy_domain: str, policy_type: str, result_type: str,
          mx_host: str = "", n: int = 1) -> None:
    """Add ``n`` to one count (a writer-thread function)."""
    key = and_(T.c.day == day, T.c.policy_domain == policy_domain[:MAX_FIELD],
               T.c.policy_type == policy_type, T.c.result_type == result_type,
               T.c.mx_host == mx_host[:MAX_FIELD])
    done = conn.execute(update(T).where(key).values(count=T.c.count + n))
    if not done.rowcount:
        conn.execute(insert(T).values(day=day, policy_domain=policy_domain[:MAX_FIELD],
                                      policy_type=policy_type, result_type=result_type,
                                      mx_host=mx_host[:MAX_FIELD], count=n))


def prune(conn, today: str, keep_days: int = KEEP_DAYS) -> None:
    """Drop the counts of days more than ``keep_days`` before ``today``."""
    oldest = (datetime.date.fromisoformat(today) -
              datetime.timedelta(days=keep_days)).isoformat()
    conn.execute(delete(T).where(T.c.day < oldest))


def counts(conn, day: str, policy_domain: str | None = None) -> list[Any]:
    """The rows of ``day`` (one policy domain or all), in a stable order."""
    query = select(T).where(T.c.day == day)
    if policy_domain is not None:
        query = query.where(T.c.policy_domain == policy_domain)
    return list(conn.execute(query.order_by(T.c.policy_domain, T.c.policy_type,
                                            T.c.result_type, T.c.mx_host)))


def daily_report(rows, day: str, organization: str, contact: str) -> dict[str, Any]:
    """The RFC 8460 §4 report (as a dict for ``json.dumps``) of ``rows`` of one day."""
    start = f"{day}T00:00:00Z"
    end_day = datetime.date.fromisoformat(day) + datetime.timedelta(days=1)
    policies: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        entry = policies.setdefault((row.policy_domain, row.policy_type), {
            "policy": {"policy-type": row.policy_type, "policy-domain": row.policy_domain},
            "summary": {"total-successful-session-count": 0,
                        "total-failure-session-count": 0},
            "failure-details": []})
        if row.result_type == "success":
            entry["summary"]["total-successful-session-count"] += row.count
            continue
        entry["summary"]["total-failure-session-count"] += row.count
        detail: dict[str, Any] = {"result-type": row.result_type,
                                  "failed-session-count": row.count}
        if row.mx_host:
            detail["receiving-mx-hostname"] = row.mx_host
        entry["failure-details"].append(detail)
    for entry in policies.values():
        if not entry["failure-details"]:
            del entry["failure-details"]
    return {
        "organization-name": organization,
        "date-range": {"start-datetime": start, "end-datetime": f"{end_day}T00:00:00Z"},
        "contact-info": contact,
        "report-id": f"{day}_{organization}",
        "policies": list(policies.values()),
    }


class TLSReports:
    """Counts sessions from the delivery workers (fire-and-forget database writes)."""

    def __init__(self, db, clock, track=lambda d: d):
        self.db, self.clock, self.track = db, clock, track
        self._pruned_day: str | None = None

    def record(self, policy_domain: str, policy_type: str, result_type: str,
               mx_host: str = "") -> None:
        today = day_of(self.clock.seconds())
        if self._pruned_day != today:
            self._pruned_day = today
            self.track(self.db.write(prune, today))
        self.track(self.db.write(count, today, policy_domain, policy_type, result_type,
                                 mx_host))
