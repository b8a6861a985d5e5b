"""The neutral tree both parsers produce: values with the ``file:line`` they came from.

The YAML reader and the XML reader each turn their document into :class:`Node` objects
(a scalar, a list of nodes, or a mapping of key → node); one builder then turns that
tree into the typed model, so both formats share every key name, conversion and error
message.
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable, NoReturn

from ..api import ConfigurationError


class Node:
    """One value of a configuration document and where it was written.

    ``value`` is a scalar (str, int, float, bool or None), a ``list`` of nodes or a
    ``dict`` of key → node (insertion-ordered, as written). ``source`` is
    ``"file:line"`` of the key or element that defined the value. ``raw`` is a
    scalar's text exactly as written (YAML reads ``Null`` as None and ``011`` as 11;
    mailet names and init parameters keep the text, as James reads it from XML).
    """

    __slots__ = ("value", "source", "raw")

    def __init__(self, value: Any, source: str, raw: str | None = None):
        self.value = value
        self.source = source
        self.raw = raw

    @property
    def is_map(self) -> bool:
        return isinstance(self.value, dict)

    @property
    def is_list(self) -> bool:
        return isinstance(self.value, list)

    @property
    def is_scalar(self) -> bool:
        return not (self.is_map or self.is_list)

    @property
    def text(self) -> str:
        """A scalar as written: the raw text when known, else the value as a string."""
        if self.raw is not None:
            return self.raw
        if isinstance(self.value, bool):
            return "true" if self.value else "false"
        return "" if self.value is None else str(self.value)

    def to_python(self) -> Any:
        """The plain Python value (dicts, lists, scalars) without sources."""
        if self.is_map:
            return {k: v.to_python() for k, v in self.value.items()}
        if self.is_list:
            return [v.to_python() for v in self.value]
        return self.value

    def __repr__(self) -> str:
        return f"Node({self.value!r}, {self.source!r})"


def fail(message: str, source: str | None) -> NoReturn:
    """Raise the ConfigurationError every loader error goes through."""
    raise ConfigurationError(message, source)


def suggestion(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for a near miss, else an empty string."""
    candidates = list(candidates)
    for cand in candidates:
        if cand.lower() == word.lower():
            return f" (did you mean {cand!r}?)"
    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    if not close:
        folded = {c.lower().replace("_", "").replace("-", ""): c for c in candidates}
        close = [folded[c] for c in difflib.get_close_matches(
            word.lower().replace("_", "").replace("-", ""), list(folded), n=1, cutoff=0.7)]
    return f" (did you mean {close[0]!r}?)" if close else ""
