"""The execution rules of processors (James semantics), one test per rule."""

from __future__ import annotations

import pytest
import pytest_twisted

from mailet_mta.api import ConfigurationError, Mail, MailAddress
from mailet_mta.config.model import MailetSpec, MatcherSpec, ProcessorSpec, SpoolManagerConfig
from mailet_mta.spool.processor import Pipeline, PropagatedError
from tests.support import plugins

P = "tests.support.plugins."


class Ctx:
    """Only what Pipeline construction needs."""

    log = None


def pair(mailet, match=None, cond=None, notmatch=False, children=None, **params):
    on_mailet = params.pop("on_mailet", "error")
    on_match = params.pop("on_match", "error")
    spec = None
    if match:
        spec = MatcherSpec(name=match if "." in match or match in
                           ("And", "Or", "Not", "Xor", "All") or match.islower() else P + match,
                           condition=cond, children=children or [])
    return MailetSpec(mailet=mailet if "." in mailet else P + mailet, match=spec,
                      notmatch=notmatch, parameters=params, on_mailet_exception=on_mailet,
                      on_match_exception=on_match, source="test.yaml:1")


def m(name, cond=None, *children):
    return MatcherSpec(name=name if name in ("And", "Or", "Not", "Xor") or "." in name
                       else P + name, condition=cond, children=list(children))


def pipeline(processors, named=None, max_changes=100):
    procs = {}
    for name, pairs in processors.items():
        procs[name] = ProcessorSpec(name=name, mailets=pairs,
                                    matchers=(named or {}).get(name, {}))
    procs.setdefault("error", ProcessorSpec(name="error", mailets=[pair("Record", label="error"),
                                                                    pair("Drop")]))
    return Pipeline(SpoolManagerConfig(processors=procs, max_state_changes=max_changes), Ctx())


def mail(*rcpts, body=b"Subject: t\r\n\r\nhello\r\n"):
    return Mail(sender=MailAddress.parse("s@example.org"),
                recipients=[MailAddress.parse(r) for r in rcpts], message=body)


@pytest.fixture(autouse=True)
def _reset():
    plugins.reset()


def labels():
    return [s[0] for s in plugins.SEEN]


@pytest_twisted.ensureDeferred
async def test_full_match_runs_mailet_on_the_mail_without_copy():
    p = pipeline({"root": [pair("Record", "LocalPartStartsWith", "a", label="x"), pair("Drop")]})
    ml = mail("a1@x.org", "a2@x.org")
    await p.run(ml)
    assert plugins.SEEN == [("x", ml.name, ["a1@x.org", "a2@x.org"], "root")]


@pytest_twisted.ensureDeferred
async def test_partial_match_splits_the_mail_and_both_continue():
    p = pipeline({"root": [pair("Record", "LocalPartStartsWith", "a", label="matched"),
                           pair("Record", label="after"), pair("Drop")]})
    ml = mail("a1@x.org", "b1@x.org")
    await p.run(ml)
    seen = {(s[0], tuple(s[2])) for s in plugins.SEEN}
    assert ("matched", ("a1@x.org",)) in seen
    assert ("after", ("a1@x.org",)) in seen and ("after", ("b1@x.org",)) in seen
    names = {s[1] for s in plugins.SEEN if s[0] == "after"}
    assert len(names) == 2 and ml.name in names
    assert ("matched", ("b1@x.org",)) not in seen


@pytest_twisted.ensureDeferred
async def test_no_match_skips_the_mailet():
    p = pipeline({"root": [pair("Record", "LocalPartStartsWith", "zz", label="never"),
                           pair("Record", label="after"), pair("Drop")]})
    await p.run(mail("a@x.org"))
    assert labels() == ["after"]


@pytest_twisted.ensureDeferred
async def test_state_change_moves_mail_to_that_processor_at_once():
    p = pipeline({"root": [pair("GoTo", processor="transport"), pair("Record", label="root-after")],
                  "transport": [pair("Record", label="transport"), pair("Drop")]})
    await p.run(mail("a@x.org"))
    assert labels() == ["transport"]


@pytest_twisted.ensureDeferred
async def test_ghost_state_ends_processing():
    p = pipeline({"root": [pair("Drop"), pair("Record", label="never")]})
    ml = mail("a@x.org")
    await p.run(ml)
    assert labels() == [] and ml.state == "ghost"


@pytest_twisted.ensureDeferred
async def test_falling_off_the_end_ghosts_the_mail():
    p = pipeline({"root": [pair("Record", label="only")]})
    ml = mail("a@x.org")
    await p.run(ml)
    assert labels() == ["only"] and ml.state == "ghost"


@pytest_twisted.ensureDeferred
async def test_mailet_exception_default_policy_sends_to_error_with_message():
    p = pipeline({"root": [pair("Boom"), pair("Record", label="never")]})
    ml = mail("a@x.org")
    await p.run(ml)
    assert labels() == ["error"]
    assert "boom" in ml.error_message


@pytest_twisted.ensureDeferred
async def test_mailet_exception_ignore_goes_on():
    p = pipeline({"root": [pair("Boom", on_mailet="ignore"), pair("Record", label="next"),
                           pair("Drop")]})
    await p.run(mail("a@x.org"))
    assert labels() == ["next"]


@pytest_twisted.ensureDeferred
async def test_mailet_exception_propagate_fails_the_run():
    p = pipeline({"root": [pair("Boom", on_mailet="propagate")]})
    with pytest.raises(PropagatedError):
        await p.run(mail("a@x.org"))


@pytest_twisted.ensureDeferred
async def test_mailet_exception_to_named_processor():
    p = pipeline({"root": [pair("Boom", on_mailet="oops")],
                  "oops": [pair("Record", label="oops"), pair("Drop")]})
    await p.run(mail("a@x.org"))
    assert labels() == ["oops"]


@pytest_twisted.ensureDeferred
async def test_match_exception_policies():
    for policy, expected in (("nomatch", ["after"]), ("matchall", ["guarded", "after"]),
                             ("error", ["error"]), ("oops", ["oops"])):
        plugins.reset()
        p = pipeline({"root": [pair("Record", "BadMatcher", label="guarded", on_match=policy),
                               pair("Record", label="after"), pair("Drop")],
                      "oops": [pair("Record", label="oops"), pair("Drop")]})
        await p.run(mail("a@x.org"))
        assert labels() == expected, policy
    p = pipeline({"root": [pair("Record", "BadMatcher", on_match="propagate")]})
    with pytest.raises(PropagatedError):
        await p.run(mail("a@x.org"))


@pytest_twisted.ensureDeferred
async def test_notmatch_inverts_the_matcher():
    p = pipeline({"root": [pair("Record", "LocalPartStartsWith", "a", notmatch=True, label="inv"),
                           pair("Drop")]})
    await p.run(mail("a@x.org", "b@x.org"))
    assert [s[2] for s in plugins.SEEN] == [["b@x.org"]]


@pytest_twisted.ensureDeferred
async def test_composite_matchers_and_or_not_xor_nested_and_named():
    a, b = m("LocalPartStartsWith", "a"), m("LocalPartStartsWith", "ab")
    rc = ["a@x.org", "ab@x.org", "c@x.org"]
    cases = {
        "And": (m("And", None, a, b), ["ab@x.org"]),
        "Or": (m("Or", None, a, b), ["a@x.org", "ab@x.org"]),
        "Not": (m("Not", None, a), ["c@x.org"]),
        "Xor": (m("Xor", None, a, b), ["a@x.org"]),
        "nested": (m("Not", None, m("And", None, a, b)), ["a@x.org", "c@x.org"]),
    }
    for label, (spec, expected) in cases.items():
        plugins.reset()
        p = pipeline({"root": [MailetSpec(mailet=P + "Record", match=spec,
                                          parameters={"label": label}), pair("Drop")]})
        await p.run(mail(*rc))
        assert [s[2] for s in plugins.SEEN] == [sorted(expected)], label
    plugins.reset()
    p = pipeline({"root": [MailetSpec(mailet=P + "Record", match=MatcherSpec(name="starts-a"),
                                      parameters={"label": "named"}), pair("Drop")]},
                 named={"root": {"starts-a": m("Or", None, a)}})
    await p.run(mail(*rc))
    assert [s[2] for s in plugins.SEEN] == [["a@x.org", "ab@x.org"]]


@pytest_twisted.ensureDeferred
async def test_deferred_and_coroutine_mailets_and_async_matchers():
    p = pipeline({"root": [pair("DeferredRecord", "AsyncAll", label="d"),
                           pair("CoroutineRecord", label="c"), pair("Drop")]})
    await p.run(mail("a@x.org"))
    assert labels() == ["d", "c"]


@pytest_twisted.ensureDeferred
async def test_loop_between_processors_is_stopped_and_sent_to_error():
    p = pipeline({"root": [pair("GoTo", processor="other")],
                  "other": [pair("GoTo", processor="root")]}, max_changes=10)
    ml = mail("a@x.org")
    await p.run(ml)
    assert labels() == ["error"]


@pytest_twisted.ensureDeferred
async def test_unknown_state_at_run_time_goes_to_error():
    p = pipeline({"root": [pair("GoTo", processor="root")]})
    ml = mail("a@x.org")
    ml.state = "nowhere"
    await p.run(ml)
    assert labels() == ["error"] and "nowhere" in ml.error_message


@pytest_twisted.ensureDeferred
async def test_untouched_message_keeps_its_bytes_and_changed_one_is_rewritten():
    body = b"Subject:   odd   spacing\r\nX-A: 1\r\n\r\nbody\r\n"
    p = pipeline({"root": [pair("Record", label="r"), pair("Drop")]})
    ml = mail("a@x.org", body=body)
    ml.message["Subject"]   # parsing alone is not a change
    await p.run(ml)
    assert ml.message_bytes() == body
    p = pipeline({"root": [pair("AddHeader", value="v"), pair("Drop")]})
    ml = mail("a@x.org", body=body)
    await p.run(ml)
    assert b"X-Seen: v\r\n" in ml.message_bytes()


def test_reference_to_missing_processor_fails_at_start_up_with_source():
    with pytest.raises(ConfigurationError) as exc:
        pipeline({"root": [pair("GoTo", processor="transprot")]})
    assert "transprot" in str(exc.value) and "test.yaml:1" in str(exc.value)


def test_unknown_mailet_and_matcher_fail_at_start_up():
    with pytest.raises(ConfigurationError, match="cannot load mailet"):
        pipeline({"root": [pair("NoSuchMailet")]})
    with pytest.raises(ConfigurationError, match="unknown matcher"):
        pipeline({"root": [MailetSpec(mailet=P + "Drop", match=MatcherSpec(name="NoSuch"))]})


def test_exception_policy_naming_missing_processor_fails_at_start_up():
    with pytest.raises(ConfigurationError, match="onMailetException"):
        pipeline({"root": [pair("Drop", on_mailet="nowhere")]})


def test_unknown_mailet_parameter_is_refused():
    with pytest.raises(ConfigurationError, match="unknown parameter"):
        pipeline({"root": [pair("StrictParams", unknown="1")]})


def test_root_and_error_are_required():
    with pytest.raises(ConfigurationError, match="'root'"):
        Pipeline(SpoolManagerConfig(processors={"error": ProcessorSpec(name="error")}), Ctx())


class RecordingObserver:
    """Every event the pipeline reports, in order."""

    trail = True
    timed = True

    def __init__(self):
        self.events = []

    def entered(self, mail, processor):
        self.events.append(("entered", processor))

    def ghosted(self, mail, processor):
        self.events.append(("ghosted", processor))

    def mailet_changed(self, label, mail):
        self.events.append(("changed", label, mail.state))

    def processor_time(self, processor, seconds):
        self.events.append(("time", processor, seconds >= 0))


@pytest_twisted.ensureDeferred
async def test_the_injected_observer_sees_each_processor_visit_change_and_ghosting():
    procs = {"root": [pair("GoTo", processor="transport")], "transport": [pair("Drop")]}
    specs = {n: ProcessorSpec(name=n, mailets=p) for n, p in procs.items()}
    specs["error"] = ProcessorSpec(name="error", mailets=[pair("Drop")])
    observer = RecordingObserver()
    pipe = Pipeline(SpoolManagerConfig(processors=specs), Ctx(), observer)
    await pipe.run(mail("a@example.com"))
    assert observer.events == [
        ("entered", "root"), ("changed", f"All/{P}GoTo", "transport"), ("time", "root", True),
        ("entered", "transport"), ("changed", f"All/{P}Drop", "ghost"),
        ("ghosted", "transport"), ("time", "transport", True)]


@pytest_twisted.ensureDeferred
async def test_a_pipeline_without_an_observer_reports_nothing_and_still_runs():
    pipe = pipeline({"root": [pair("Record", label="r"), pair("Drop")]})
    assert pipe.observer.trail is False and pipe.observer.timed is False
    await pipe.run(mail("a@example.com"))
    assert labels() == ["r"]
