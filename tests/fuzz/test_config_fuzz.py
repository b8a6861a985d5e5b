"""The YAML and XML configuration loaders under random and hostile input.

Whatever the file holds, loading either gives a ServerConfig or raises
ConfigurationError whose text starts with ``<file>:<line>:`` — never another
exception, never a hang, never a fetched URL or a read local file. Entity expansion
(billion laughs), external entities and DTDs, YAML alias bombs and self-containing
aliases are refused with a message.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailet_mta.api import ConfigurationError
from mailet_mta.config.loader import load_config_text
from mailet_mta.config.tree import MAX_ERRORS
from tests.fuzz.replies import FUZZ_SETTINGS
from tests.support.examples import examples

EXAMPLES = int(os.environ.get("MAILET_MTA_FUZZ_EXAMPLES", examples(40)))
ROOT = Path(__file__).resolve().parents[2]
YAML_TEXT = (ROOT / "conf" / "mailet-mta.yaml").read_text()
XML_TEXT = (ROOT / "conf" / "config.xml").read_text()
SOURCE_RE = re.compile(r"\A[^\n]*?:(\d+|\?)?:? ")


def load_or_refuse(text, fmt):
    """Load; on refusal check the message names the file (and a line when it can)."""
    started = time.monotonic()
    try:
        load_config_text(text, fmt, name="fuzz.conf")
        outcome = "ok"
    except ConfigurationError as exc:
        message = str(exc)
        errors = getattr(exc, "errors", [exc])    # every error of the file
        assert len(errors) <= MAX_ERRORS + 1, message
        for error in errors:
            text = str(error)
            assert text.startswith("fuzz.conf"), text
            assert "\n" not in text.strip() or text.count("\n") < 5, text
        outcome = message
    assert time.monotonic() - started < 10, "a configuration took over 10 s to load"
    return outcome


def mutate(text: str, cuts: list[tuple[int, int, str]]) -> str:
    for pos, length, insert in cuts:
        pos %= max(len(text), 1)
        text = text[:pos] + insert + text[pos + length:]
    return text


EDITS = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 12),
                           st.one_of(st.sampled_from(
                               ["", ":", "- ", "  ", "\n", "&a ", "*a", "<<: *a\n",
                                "!!python/object:os.system ",
                                "{", "[", "'", "\"", "\t", "0x", "-1", "yes", "~", "<", "/>",
                                "&amp;", "&xx;", "<![CDATA[", "<!--", "%", "\x00", "\ufeff"]),
                               st.text(max_size=8))), min_size=1, max_size=6)


@settings(max_examples=EXAMPLES, **FUZZ_SETTINGS)
@given(EDITS)
def test_mutated_yaml_config_loads_or_is_refused_with_file_and_line(edits):
    load_or_refuse(mutate(YAML_TEXT, edits), "yaml")


@settings(max_examples=EXAMPLES, **FUZZ_SETTINGS)
@given(EDITS)
def test_mutated_xml_config_loads_or_is_refused_with_file_and_line(edits):
    load_or_refuse(mutate(XML_TEXT, edits), "xml")


@settings(max_examples=EXAMPLES, **FUZZ_SETTINGS)
@given(st.text(max_size=300))
def test_random_text_as_yaml_or_xml_is_refused_cleanly(text):
    load_or_refuse(text, "yaml")
    load_or_refuse(text, "xml")


# -- hostile documents, named ---------------------------------------------------------
BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<config><servernames><servername>&lol9;</servername></servernames></config>
"""


def test_xml_billion_laughs_is_refused():
    message = load_or_refuse(BILLION_LAUGHS, "xml")
    assert message != "ok" and "entit" in message.lower()


def test_xml_external_entity_is_refused_and_not_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    doc = (f'<?xml version="1.0"?><!DOCTYPE c [<!ENTITY x SYSTEM "file://{secret}">]>'
           f'<config><servernames><servername>&x;</servername></servernames></config>')
    message = load_or_refuse(doc, "xml")
    assert message != "ok" and "TOPSECRET" not in message


def test_xml_external_dtd_and_parameter_entities_are_refused():
    for doc in ['<?xml version="1.0"?><!DOCTYPE c SYSTEM "http://192.0.2.1/x.dtd"><config/>',
                '<?xml version="1.0"?><!DOCTYPE c [<!ENTITY % p SYSTEM '
                '"http://192.0.2.1/p"> %p;]><config/>']:
        started = time.monotonic()
        assert load_or_refuse(doc, "xml") != "ok"
        assert time.monotonic() - started < 2      # nothing was fetched


def test_xml_nested_ten_thousand_levels_is_refused_cleanly():
    load_or_refuse("<config>" + "<a>" * 10000 + "</a>" * 10000 + "</config>", "xml")


def yaml_bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]"
              for i in range(1, levels)]
    return "\n".join(lines) + f"\nservernames: *a{levels - 1}\n"


def test_yaml_alias_bomb_is_refused():
    assert "expands to more than" in load_or_refuse(yaml_bomb(), "yaml")


def test_yaml_alias_that_contains_itself_is_refused_not_a_recursion_error():
    for doc in ["servernames: &a [*a]\n", "storage: &s {x: *s}\n"]:
        assert "nest" in load_or_refuse(doc, "yaml")


def test_yaml_nested_five_thousand_levels_is_refused_not_a_recursion_error():
    assert load_or_refuse("servernames: " + "[" * 5000 + "]" * 5000, "yaml") != "ok"


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system ['touch /tmp/pwn']",
                                 "!!python/name:os.system", "!!set {a}"])
def test_yaml_python_and_binary_tags_are_refused(tag):
    assert "tag" in load_or_refuse(f"servernames: {tag}\n", "yaml").lower()
