"""The neutral tree both parsers produce: values with the ``file:line`` they came from.

The YAML reader and the XML reader each turn their document into :class:`Node` objects
(a scalar, a list of nodes, or a mapping of key → node); one builder then turns that
tree into the typed model, so both formats share every key name, conversion and error
message.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NoReturn

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


MAX_ERRORS = 100   # errors kept per file: more only repeat one mistake


class ConfigurationErrors(ConfigurationError):
    """Several errors of one file, each ``file:line: message``, in the order found.

    ``message`` and ``source`` are the first error's, so code that reports one error
    still reads well; ``str()`` lists them all, one ``file:line: message`` per line.
    ``config`` is what could be built despite the errors (for further checks), or None.
    """

    def __init__(self, errors: list[ConfigurationError], config: Any = None):
        super().__init__(errors[0].message, errors[0].source)
        self.errors = list(errors)
        self.config = config

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


def combine(errors: list[ConfigurationError], config: Any = None) -> ConfigurationError:
    """One error as itself; several as :class:`ConfigurationErrors` (flattened)."""
    flat: list[ConfigurationError] = []
    for error in errors:
        flat.extend(getattr(error, "errors", [error]))
    if len(flat) == 1:
        return flat[0]
    return ConfigurationErrors(flat, config)


class Report:
    """What loading one file found: its errors and its warnings (both ``file:line``).

    ``failed`` holds the labels of keys whose value could not be read, so later
    cross-checks can stay quiet about what only follows from that first error.
    """

    def __init__(self) -> None:
        self.errors: list[ConfigurationError] = []
        self.warnings: list[str] = []
        self.failed: set[str] = set()
        self.dropped = 0

    def add(self, error: ConfigurationError, label: str | None = None) -> None:
        for one in getattr(error, "errors", [error]):
            if len(self.errors) < MAX_ERRORS:
                self.errors.append(one)
            else:
                self.dropped += 1
        if label:
            self.failed.add(label)

    def all_errors(self, name: str) -> list[ConfigurationError]:
        """The errors kept, plus one line saying how many more were found."""
        if not self.dropped:
            return list(self.errors)
        return [*self.errors, ConfigurationError(
            f"{self.dropped} more errors not shown; fix these first", name)]


_REPORT: contextvars.ContextVar[Report | None] = contextvars.ContextVar(
    "mailet_mta_config_report", default=None)


@contextlib.contextmanager
def reporting() -> Iterator[Report]:
    """Collect errors and warnings of the loading done inside the block."""
    report = Report()
    token = _REPORT.set(report)
    try:
        yield report
    finally:
        _REPORT.reset(token)


def warn(message: str, source: str | None) -> None:
    """Record a warning (``file:line: message``) for the file being loaded."""
    report = _REPORT.get()
    if report is not None:
        report.warnings.append(str(ConfigurationError(message, source)))


def attempt(action: Callable[[], Any], label: str | None = None, default: Any = None) -> Any:
    """``action()``; while a report collects, its ConfigurationError is recorded and
    ``default`` returned so the rest of the file is still checked."""
    report = _REPORT.get()
    if report is None:
        return action()
    try:
        return action()
    except ConfigurationError as exc:
        report.add(exc, label)
        return default


def has_failed(*labels: str) -> bool:
    """True when the value of one of the keys ``labels`` could not be read."""
    report = _REPORT.get()
    return report is not None and any(label in report.failed for label in labels)


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
