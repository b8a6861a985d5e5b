"""Calling plugin code that may answer with a value, a Deferred or a coroutine."""

from __future__ import annotations

import inspect

from twisted.internet.defer import Deferred


async def call_async(fn, *args):
    """``fn(*args)``, awaiting the result when it is a Deferred or awaitable."""
    result = fn(*args)
    if isinstance(result, Deferred) or inspect.isawaitable(result):
        result = await result
    return result


_PLAIN = (type(None), list, tuple, set, frozenset, bool, str, int)


def is_async_result(result) -> bool:
    """True for a Deferred or awaitable (plain values answer on the fast path)."""
    if type(result) in _PLAIN:
        return False
    return isinstance(result, Deferred) or inspect.isawaitable(result)
