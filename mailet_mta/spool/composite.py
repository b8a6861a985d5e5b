"""Composite matchers: And, Or, Not, Xor over other matchers (nestable).

They combine the recipient sets their operands return: And is the intersection, Or the
union, Not the recipients no operand matched, Xor the recipients matched by an odd
number of operands (for two operands: exactly one). Their operands may return
Deferreds or be coroutines like any matcher.
"""

from __future__ import annotations

from zope.interface import implementer

from ..api import IMatcher
from .invoke import call_async


@implementer(IMatcher)
class CompositeMatcher:
    """Base of the four composites; ``operands`` are initialised matchers."""

    name = "Composite"

    def __init__(self, operands):
        self.operands = list(operands)

    def init(self, config):
        self.config = config

    async def _results(self, mail):
        out = []
        for m in self.operands:
            out.append(set(await call_async(m.match, mail) or ()))
        return out

    async def match(self, mail):
        sets = await self._results(mail)
        chosen = self.combine(set(mail.recipients), sets)
        return [r for r in mail.recipients if r in chosen]

    def combine(self, everyone, sets):
        raise NotImplementedError

    def destroy(self):
        for m in self.operands:
            m.destroy()


class And(CompositeMatcher):
    name = "And"

    def combine(self, everyone, sets):
        out = set(everyone)
        for s in sets:
            out &= s
        return out


class Or(CompositeMatcher):
    name = "Or"

    def combine(self, everyone, sets):
        out = set()
        for s in sets:
            out |= s
        return out


class Not(CompositeMatcher):
    name = "Not"

    def combine(self, everyone, sets):
        out = set(everyone)
        for s in sets:
            out -= s
        return out


class Xor(CompositeMatcher):
    name = "Xor"

    def combine(self, everyone, sets):
        out = set()
        for s in sets:
            out ^= s
        return out


COMPOSITES = {"And": And, "Or": Or, "Not": Not, "Xor": Xor}
