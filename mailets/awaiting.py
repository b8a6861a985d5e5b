"""Waiting for a context service whatever it returns.

``IMailetContext`` services return Deferreds, but a test context or a user's context
may answer with a plain value. Inside an ``async def service`` write
``await settled(self.context.send_mail(copy))`` and it works for both.
"""

from __future__ import annotations

from typing import Any


async def settled(result: Any) -> Any:
    """The value of ``result``: awaited when it is awaitable (a Deferred), else as is."""
    if hasattr(result, "__await__"):
        return await result
    return result
