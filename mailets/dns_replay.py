"""Run a synchronous DNS-using library (dkimpy, pyspf) without blocking anything.

The library runs on a mailet worker thread and asks DNS through a callback that only
reads answers already fetched. A question not yet answered stops the run with
:class:`NeedLookup`; back on the reactor the answer is fetched with
``context.dns_lookup`` and the run starts again with it. Each run asks at least one
new question or finishes, so the rounds are bounded by the library's own lookup
limits (and by ``max_rounds`` whatever happens).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from mailet_mta.api import IMailetContext, TemporaryError

T = TypeVar("T")

MAX_ROUNDS = 30


class NeedLookup(Exception):
    """Raised inside the library's DNS callback for a question not answered yet."""

    def __init__(self, name: str, rrtype: str) -> None:
        super().__init__(f"{rrtype} {name}")
        self.key = (name.lower().rstrip("."), rrtype)


class Answers:
    """Answers fetched so far: ``(name, type)`` → list, or TemporaryError text."""

    def __init__(self) -> None:
        self.known: dict[tuple[str, str], list[Any] | str] = {}

    def get(self, name: str, rrtype: str) -> list[Any]:
        """The records, or raise NeedLookup / TemporaryError (a failed lookup)."""
        key = (name.lower().rstrip("."), rrtype)
        if key not in self.known:
            raise NeedLookup(*key)
        value = self.known[key]
        if isinstance(value, str):
            raise TemporaryError(value)
        return value


async def run_with_dns(context: IMailetContext, fn: Callable[..., T], *args: Any,
                       max_rounds: int = MAX_ROUNDS) -> T:
    """``fn(answers, *args)`` on a worker thread until it no longer needs a lookup."""
    answers = Answers()
    for _ in range(max_rounds):
        outcome: tuple[None, T] | tuple[NeedLookup, None] = await context.run_in_worker(
            _one_round, fn, answers, *args)
        if outcome[0] is None:
            return outcome[1]
        need = outcome[0]
        name, rrtype = need.key
        try:
            answers.known[need.key] = await context.dns_lookup(name, rrtype)
        except TemporaryError as exc:
            answers.known[need.key] = str(exc) or "DNS lookup failed"
    raise TemporaryError(f"more than {max_rounds} DNS lookups for one mail")


def _one_round(fn: Callable[..., T], answers: Answers,
               *args: Any) -> tuple[None, T] | tuple[NeedLookup, None]:
    """(None, result) when ``fn`` finished, (NeedLookup, None) when it needs DNS: the
    question comes back as a value, not as a failed Deferred."""
    try:
        return None, fn(answers, *args)
    except NeedLookup as need:
        return need, None
