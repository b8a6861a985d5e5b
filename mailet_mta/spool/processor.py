"""The pipeline engine: processors of matcher/mailet pairs with James's semantics.

Rules (each has a test in tests/unit/test_pipeline.py):
- Pairs run in order. The matcher returns the recipients it matches: all of them → the
  mailet runs on the mail; some → the mail is split: a copy with the matched recipients
  runs the mailet, the original keeps the rest and skips it; both go on through the
  later pairs; none → the pair is skipped.
- After a mailet, a mail whose ``state`` changed leaves the processor for that one;
  ``ghost`` or no recipients left ends it; an unknown state sends it to ``error``.
- A mail that falls off the end of a processor is ghosted, with a warning.
- ``onMailetException``: ``error`` (default: state error, error message set),
  ``ignore``, ``propagate`` (the whole run fails and the spool retries the mail later)
  or a processor name. ``onMatchException``: ``error``, ``nomatch``, ``matchall``,
  ``propagate`` or a processor name.
- Loop protection: a mail that changes processor more than ``max_state_changes``
  times goes to ``error`` (and is ghosted if it loops there too).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from time import perf_counter

from twisted.logger import Logger

from ..api import ATTR_ERROR_PROCESSOR, ConfigurationError, Mail, MailetConfig, MatcherConfig
from ..config.james_names import short_name
from ..config.model import MatcherSpec, ProcessorSpec, SpoolManagerConfig
from ..config.tree import combine
from ..mail import MimeLimits
from .composite import COMPOSITES
from .invoke import is_async_result
from .observer import PipelineObserver
from .registry import resolve

log = Logger(namespace="mailet_mta.spool")

GHOST = Mail.GHOST
ATTR_MAILET_ERROR = "mailet_mta.mailet_error"
_KEYWORDS_MAILET = {"error", "ignore", "propagate"}
_KEYWORDS_MATCH = {"error", "nomatch", "matchall", "propagate"}


def _in_recipient_order(recipients: list, result) -> list:
    """The matched recipients, in the mail's order, limited to the mail's recipients."""
    if not result:
        return []
    if len(recipients) == 1:
        return list(recipients) if recipients[0] in result else []
    if len(result) == len(recipients) and all(a is b for a, b in zip(result, recipients)):
        return list(recipients)          # the common "everyone, as given" answer
    wanted = set(result)
    return [r for r in recipients if r in wanted]


class PropagatedError(Exception):
    """A mailet or matcher failed under ``propagate``: retry the whole mail later."""


@dataclass
class Pair:
    matcher: object | None        # None = All
    mailet: object
    notmatch: bool
    on_mailet_exception: str
    on_match_exception: str
    label: str                    # "Matcher/Mailet" for logs
    source: str | None


class Processor:
    """One named processor: its pairs in order."""

    def __init__(self, name: str, pairs: list[Pair]):
        self.name = name
        self.pairs = pairs


class Pipeline:
    """Every processor of a configuration, built and initialised, ready to run mails."""

    def __init__(self, config: SpoolManagerConfig, context,
                 observer: PipelineObserver | None = None):
        self.config = config
        self.context = context
        self.observer = observer if observer is not None else PipelineObserver()
        self.processors: dict[str, Processor] = {}
        self.max_state_changes = config.max_state_changes
        errors: list[ConfigurationError] = []
        self.mime_limits = MimeLimits(config.max_mime_parts, config.max_mime_depth)
        for spec in config.processors.values():
            self.processors[spec.name] = self._build_processor(spec, errors)
        if errors:   # every class that cannot be found or set up, in one report
            raise combine(errors)
        self._check_references()

    # -- building -----------------------------------------------------------------------
    def _build_processor(self, spec: ProcessorSpec, errors: list) -> Processor:
        pairs = []
        for m in spec.mailets:
            try:
                pairs.append(self._build_pair(m, spec))
            except ConfigurationError as exc:
                errors.append(exc)
        return Processor(spec.name, pairs)

    def _build_pair(self, m, spec: ProcessorSpec) -> Pair:
        """One matcher/mailet pair; errors of both halves are raised together."""
        matcher = mailet = None
        label_match = "All"
        errors = []
        try:
            if m.match is not None and not (m.match.name == "All" and not m.match.children
                                            and not m.notmatch and m.match.condition is None):
                matcher = self._build_matcher(m.match, spec, set())
                label_match = m.match.name + (f"={m.match.condition}"
                                              if m.match.condition else "")
        except ConfigurationError as exc:
            errors.append(exc)
        try:
            mailet = resolve("mailet", m.mailet, m.source)()
            mailet.init(MailetConfig(m.mailet, self.context, m.parameters, spec.name,
                                     m.source))
        except ConfigurationError as exc:
            errors.append(exc)
        if errors:
            raise combine(errors)
        return Pair(matcher, mailet, m.notmatch, m.on_mailet_exception,
                    m.on_match_exception,
                    f"{'not ' if m.notmatch else ''}{label_match}/{m.mailet}", m.source)

    def _build_matcher(self, spec: MatcherSpec, processor: ProcessorSpec, seen: set):
        named = processor.matchers.get(spec.name)
        if (named is not None or spec.name in COMPOSITES) and (spec.condition or "").strip():
            raise ConfigurationError(f"the matcher {spec.name} takes no condition, but was "
                                     f"given {spec.condition!r}; write match={spec.name}",
                                     spec.source)
        if named is not None and not spec.children:
            if spec.name in seen:
                raise ConfigurationError(f"composite matcher {spec.name!r} refers to itself",
                                         spec.source)
            return self._build_matcher(named, processor, seen | {spec.name})
        composite = COMPOSITES.get(short_name("matcher", spec.name))
        if composite is not None:
            if not spec.children:
                raise ConfigurationError(f"{spec.name} needs at least one operand", spec.source)
            operands = [self._build_matcher(c, processor, seen) for c in spec.children]
            matcher = composite(operands)
            matcher.init(MatcherConfig(spec.name, None, self.context, processor.name, spec.source))
            return matcher
        cls = resolve("matcher", spec.name, spec.source)
        matcher = cls()
        matcher.init(MatcherConfig(spec.name, spec.condition, self.context, processor.name,
                                   spec.source))
        return matcher

    def _check_references(self) -> None:
        names = set(self.processors)
        for required in ("root", "error"):
            if required not in names:
                raise ConfigurationError(f"the spoolmanager needs a processor named {required!r}",
                                         self.config.source)
        for proc in self.processors.values():
            for pair in proc.pairs:
                wanted = []
                required = getattr(pair.mailet, "required_processors", None)
                if required is not None:
                    wanted += [(p, "mailet parameter") for p in required() if p]
                if pair.on_mailet_exception not in _KEYWORDS_MAILET:
                    wanted.append((pair.on_mailet_exception, "onMailetException"))
                if pair.on_match_exception not in _KEYWORDS_MATCH:
                    wanted.append((pair.on_match_exception, "onMatchException"))
                for target, what in wanted:
                    if target != GHOST and target not in names:
                        raise ConfigurationError(
                            f"{pair.label} in processor {proc.name!r} sends mail to processor "
                            f"{target!r} ({what}), which is not defined; defined: "
                            f"{', '.join(sorted(names))}", pair.source)

    def destroy(self) -> None:
        for proc in self.processors.values():
            for pair in proc.pairs:
                for part in (pair.mailet, pair.matcher):
                    try:
                        if part is not None:
                            part.destroy()
                    except Exception:  # noqa: BLE001 - shutdown goes on
                        log.failure("destroy of {label} failed", label=pair.label)

    # -- running ------------------------------------------------------------------------
    async def run(self, mail: Mail) -> None:
        """Run ``mail`` (and every mail split from it) until all are ghosted.

        Raises PropagatedError when a pair's policy is ``propagate``.
        """
        work = [(mail, 0)]
        observer = self.observer
        while work:
            current, changes = work.pop()
            current.mime_limits = self.mime_limits
            proc = self.processors.get(current.state)
            if proc is None:
                log.warn("id={id} state={state} is not a processor; sending it to error",
                         id=current.name, state=current.state)
                current.error_message = f"unknown processor state {current.state!r}"
                current.state = "error"
                proc = self.processors["error"]
            if observer.trail:
                observer.entered(current, proc.name)
            if observer.timed:
                started = perf_counter()
                moved_on = await self._run_processor(proc, current)
                observer.processor_time(proc.name, perf_counter() - started)
            else:
                moved_on = await self._run_processor(proc, current)
            for moved in moved_on:
                changes_now = changes + 1
                if changes_now > self.max_state_changes:
                    if proc.name == "error" or moved.state == "error":
                        log.error("id={id} loops through processors; ghosting it", id=moved.name)
                        continue
                    log.error("id={id} changed processor {n} times: loop; sending it to error",
                              id=moved.name, n=changes_now)
                    moved.error_message = "processing loop detected"
                    moved.state = "error"
                    changes_now = 0 if proc.name != "error" else changes_now
                if moved.state == "error" and proc.name != "error":
                    # Where `repository reprocess error` restarts it by default.
                    moved.set_attribute(ATTR_ERROR_PROCESSOR, proc.name)
                work.append((moved, changes_now))

    async def _run_processor(self, proc: Processor, mail: Mail) -> list[Mail]:
        """Run the pairs of ``proc``; return mails that moved on to another processor."""
        active = [mail]
        moved: list[Mail] = []
        for pair in proc.pairs:
            if not active:
                break
            still = []
            for m in active:
                matched = self._match(pair, proc, m)
                if matched is not None and matched.__class__ is not list:
                    matched = await matched
                if matched is None:              # matcher error routed the mail away
                    self._leave(m, proc, moved)
                    continue
                if not matched:
                    still.append(m)
                    continue
                if len(matched) == len(m.recipients):
                    target = m
                else:
                    target = m.duplicate()
                    target.recipients = matched
                    m.recipients = [r for r in m.recipients if r not in set(matched)]
                    still.append(m)
                    log.info("id={id} split to {copy} for {rcpts} at {label}", id=m.name,
                             copy=target.name, rcpts=",".join(map(str, matched)),
                             label=pair.label)
                pending = self._service(pair, proc, target)
                if pending is not None:
                    await pending
                if target.state == proc.name and target.recipients:
                    if target is not m:
                        still.append(target)
                    else:
                        still.append(m)
                else:
                    self._leave(target, proc, moved)
            active = still
        for m in active:
            log.warn("id={id} fell off the end of processor {proc}: ghosted (a configuration "
                     "error?)", id=m.name, proc=proc.name)
            m.state = GHOST
        return moved

    def _leave(self, mail: Mail, proc: Processor, moved: list) -> None:
        if mail.state == GHOST or not mail.recipients:
            if self.observer.trail:
                self.observer.ghosted(mail, proc.name)
            mail.state = GHOST
            return
        moved.append(mail)

    def _match(self, pair: Pair, proc: Processor, mail: Mail):
        """The matched recipients (a list, maybe empty), None if the mail was routed
        away, or — for a matcher answering later — a coroutine giving one of those."""
        matcher = pair.matcher
        if matcher is None:
            matched = list(mail.recipients)
        else:
            try:
                result = matcher.match(mail)
            except Exception as exc:  # noqa: BLE001 - routed by the pair's policy
                return self._match_failed(pair, mail, exc)
            if is_async_result(result):
                return self._match_later(pair, mail, result)
            matched = _in_recipient_order(mail.recipients, result)
        if pair.notmatch:
            wanted = set(matched)
            matched = [r for r in mail.recipients if r not in wanted]
        return matched

    async def _match_later(self, pair: Pair, mail: Mail, pending):
        try:
            result = await pending
        except Exception as exc:  # noqa: BLE001 - routed by the pair's policy
            return self._match_failed(pair, mail, exc)
        matched = _in_recipient_order(mail.recipients, result)
        if pair.notmatch:
            wanted = set(matched)
            matched = [r for r in mail.recipients if r not in wanted]
        return matched

    def _match_failed(self, pair: Pair, mail: Mail, exc: Exception):
        policy = pair.on_match_exception
        log.failure("id={id} matcher of {label} failed (onMatchException={policy})",
                    id=mail.name, label=pair.label, policy=policy)
        if policy == "nomatch":
            matched = []
        elif policy == "matchall":
            matched = list(mail.recipients)
        elif policy == "propagate":
            raise PropagatedError(f"{pair.label}: {exc}") from exc
        else:
            self._route_error(mail, pair, "error" if policy == "error" else policy, exc)
            return None
        if pair.notmatch:
            wanted = set(matched)
            matched = [r for r in mail.recipients if r not in wanted]
        return matched

    def _service(self, pair: Pair, proc: Processor, mail: Mail):
        """Run the mailet; None when done, or a coroutine to await for a late answer."""
        before = (mail.state, len(mail.recipients)) if self.observer.trail else None
        try:
            result = pair.mailet.service(mail)
        except Exception as exc:  # noqa: BLE001 - routed by the pair's policy
            self._service_failed(pair, proc, mail, exc)
            return None
        if is_async_result(result):
            return self._service_later(pair, proc, mail, result, before)
        if before is not None:
            self._trail_change(pair, mail, before)
        return None

    async def _service_later(self, pair, proc, mail, pending, before):
        try:
            await pending
        except Exception as exc:  # noqa: BLE001 - routed by the pair's policy
            self._service_failed(pair, proc, mail, exc)
            return
        if before is not None:
            self._trail_change(pair, mail, before)

    def _service_failed(self, pair: Pair, proc: Processor, mail: Mail, exc: Exception):
        policy = pair.on_mailet_exception
        log.failure("id={id} mailet {label} failed (onMailetException={policy})",
                    id=mail.name, label=pair.label, policy=policy)
        if policy == "ignore":
            return
        if policy == "propagate" or (policy == "error" and proc.name == "error"):
            raise PropagatedError(f"{pair.label}: {exc}") from exc
        self._route_error(mail, pair, "error" if policy == "error" else policy, exc)

    def _trail_change(self, pair: Pair, mail: Mail, before) -> None:
        if (mail.state, len(mail.recipients)) != before or mail.message_changed:
            self.observer.mailet_changed(pair.label, mail)

    @staticmethod
    def _route_error(mail: Mail, pair: Pair, state: str, exc: Exception) -> None:
        mail.state = state
        mail.error_message = f"{pair.label}: {type(exc).__name__}: {exc}"
        mail.set_attribute(ATTR_MAILET_ERROR, "".join(
            traceback.format_exception_only(type(exc), exc)).strip())
