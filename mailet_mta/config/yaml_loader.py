"""Read a YAML configuration into a :class:`~.tree.Node` tree with a line per key.

PyYAML's ``compose`` keeps the position of every node; only the plain YAML types are
accepted (no ``!!python/…`` or custom tags), merge keys (``<<: *base``) work, and the
tree built from anchors and aliases is bounded so an alias bomb is refused.
"""

from __future__ import annotations

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, ScalarNode, SequenceNode

from .tree import Node, fail

MAX_DEPTH = 64           # lists/mappings inside each other; a real config needs < 10
MAX_NODES = 100_000
_PREFIX = "tag:yaml.org,2002:"
_PLAIN_TAGS = {f"{_PREFIX}{t}" for t in ("str", "int", "float", "bool", "null")}
_TEXT_TAGS = {f"{_PREFIX}{t}" for t in ("timestamp", "binary")}  # kept as written


def parse_yaml(text: str, name: str) -> Node:
    """The document's tree; a syntax error is a ConfigurationError at the parser's line."""
    try:
        _check_depth(text, name)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        fail(f"the document nests deeper than Python can read; a configuration needs "
             f"at most {MAX_DEPTH} levels", f"{name}:1")
    except yaml.MarkedYAMLError as exc:
        line = _error_line(exc, text)
        fail(f"YAML syntax error: {_problem(exc, line)}; fix the YAML near this line",
             f"{name}:{line}")
    except yaml.YAMLError as exc:
        fail(f"YAML error: {exc}", name)
    if root is None:
        fail("the file is empty; start from conf/mailet-mta.yaml", f"{name}:1")
    return _Converter(name).node(root, _line(name, root))


def _error_line(exc: yaml.MarkedYAMLError, text: str):
    """The line to fix: where the parser stopped, unless it ran to the end of the file
    looking for the end of something (an unclosed quote or bracket), which then started
    at the context mark."""
    mark = exc.problem_mark or exc.context_mark
    if mark is None:
        return "?"
    if exc.context_mark is not None and mark.index >= len(text.rstrip()):
        mark = exc.context_mark
    return min(mark.line + 1, max(1, text.count("\n") + (not text.endswith("\n"))))


def _problem(exc: yaml.MarkedYAMLError, line) -> str:
    """PyYAML's words, plus where the unfinished block, list or quote began."""
    problem = " ".join(p for p in (exc.context, exc.problem) if p)
    started = exc.context_mark.line + 1 if exc.context_mark is not None else line
    if exc.context and started != line:
        problem += f" (the {exc.context.split()[-1]} starts at line {started})"
    return problem


def _check_depth(text: str, name: str) -> None:
    """Refuse deep nesting from the event stream (iterative and fast) before the
    recursive composer spends seconds on it and then overflows the stack."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                fail(f"values nest more than {MAX_DEPTH} levels deep; a configuration "
                     f"needs fewer than 10 — close the lists and mappings left open",
                     f"{name}:{event.start_mark.line + 1}")
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            depth -= 1


def _line(name: str, node) -> str:
    return f"{name}:{node.start_mark.line + 1}"


class _Converter:
    """Walks the composed YAML graph once, counting nodes (aliases expand)."""

    def __init__(self, name: str):
        self.name = name
        self.count = 0
        self.depth = 0
        self.constructor = SafeConstructor()

    def node(self, yaml_node, source: str) -> Node:
        self.count += 1
        if self.count > MAX_NODES:
            fail(f"the document expands to more than {MAX_NODES} values (aliases "
                 f"repeating aliases?); write the configuration out plainly", source)
        if self.depth >= MAX_DEPTH:
            fail(f"values nest more than {MAX_DEPTH} levels deep (an alias that "
                 f"contains itself?); write the configuration out plainly", source)
        self.depth += 1
        try:
            return self._node(yaml_node, source)
        finally:
            self.depth -= 1

    def _node(self, yaml_node, source: str) -> Node:
        if isinstance(yaml_node, ScalarNode):
            return Node(self.scalar(yaml_node, source), source, yaml_node.value)
        if isinstance(yaml_node, SequenceNode):
            self.check_tag(yaml_node, f"{_PREFIX}seq", source)
            return Node([self.node(item, _line(self.name, item))
                         for item in yaml_node.value], source)
        if isinstance(yaml_node, MappingNode):
            self.check_tag(yaml_node, f"{_PREFIX}map", source)
            return Node(self.mapping(yaml_node), source)
        fail(f"unsupported YAML node {yaml_node!r}", source)

    def mapping(self, yaml_node: MappingNode) -> dict[str, Node]:
        own = sum(1 for k, _ in yaml_node.value if k.tag != f"{_PREFIX}merge")
        try:
            self.constructor.flatten_mapping(yaml_node)  # resolves merge keys (<<)
        except yaml.MarkedYAMLError as exc:
            fail(f"YAML merge key error: {exc.problem}", _line(self.name, yaml_node))
        merged = len(yaml_node.value) - own  # merged pairs come first; own keys win
        out: dict[str, Node] = {}
        own_keys: set[str] = set()
        for index, (key_node, value_node) in enumerate(yaml_node.value):
            source = _line(self.name, key_node)
            if not isinstance(key_node, ScalarNode):
                fail("a key must be a plain name, not a list or mapping", source)
            self.scalar(key_node, source)  # refuses tagged keys
            key = key_node.value  # as written: "on" stays "on", "Null" stays "Null"
            if key in own_keys:
                fail(f"key {key!r} is written twice in this block (first at "
                     f"{out[key].source}); keep one", source)
            if index >= merged:
                own_keys.add(key)
            out[key] = self.node(value_node, source)
        return out

    def scalar(self, yaml_node: ScalarNode, source: str):
        if yaml_node.tag in _TEXT_TAGS:
            return yaml_node.value
        self.check_tag(yaml_node, None, source)
        return self.constructor.construct_object(yaml_node, deep=True)

    def check_tag(self, yaml_node, expected: str | None, source: str) -> None:
        tag = yaml_node.tag
        if tag == expected or (expected is None and tag in _PLAIN_TAGS):
            return
        fail(f"YAML tag {tag.replace(_PREFIX, '!!')!r} is not allowed here; the "
             f"configuration uses plain strings, numbers, booleans, lists and mappings",
             source)
