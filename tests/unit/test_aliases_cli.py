"""``mailet-mta aliases add|remove|list``: every kind of mapping the rewrite table
knows, and the errors an administrator can hit."""

from __future__ import annotations

import pytest

from mailet_mta.cli import main


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(f"servernames: [example.com]\nstorage: {{data_dir: {tmp_path / 'var'}}}\n")
    return str(path)


def cli(capsys, config, *args) -> tuple[int, str, str]:
    code = main([*args, "--config", config])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_every_kind_of_mapping_is_added_listed_and_removed(capsys, config):
    assert cli(capsys, config, "domains", "add", "old.example")[0] == 0
    adds = [("sales@example.com", "alice@example.com", "bob@example.net"),
            ("*@example.com", "catchall@example.com"),
            ("old.example", "example.com"),
            ("help@example.com", r"regex:(.*)@example\.com:${1}@desk.example"),
            ("gone@example.com", "error:550 5.1.1 left the company")]
    for source, *targets in adds:
        code, out, err = cli(capsys, config, "aliases", "add", source, *targets)
        assert code == 0, err
    _code, listing, _err = cli(capsys, config, "aliases", "list")
    rows = {tuple(line.split()[:3]) for line in listing.splitlines()[2:]}
    assert rows >= {("sales@example.com", "alice@example.com", "address"),
                    ("sales@example.com", "bob@example.net", "forward"),
                    ("*@example.com", "catchall@example.com", "catch-all"),
                    ("old.example", "domain:example.com", "domain"),
                    ("help@example.com", r"regex:(.*)@example\.com:${1}@desk.example",
                     "regex")}
    gone = next(line for line in listing.splitlines() if line.startswith("gone@"))
    assert "error:550 5.1.1 left the company" in gone and gone.split()[-2:] == [
        "error", "database"]
    assert cli(capsys, config, "aliases", "remove", "sales@example.com",
               "bob@example.net")[0] == 0
    assert cli(capsys, config, "aliases", "remove", "old.example", "example.com")[0] == 0
    code, out, _ = cli(capsys, config, "aliases", "remove", "*@example.com")
    assert code == 0 and "1 mapping(s) of *@example.com removed" in out
    _code, listing, _err = cli(capsys, config, "aliases", "list", "sales@example.com")
    assert "alice@example.com" in listing and "bob@example.net" not in listing


@pytest.mark.parametrize("args, message", [
    (["add", "x@elsewhere.example", "alice@example.com"],
     "elsewhere.example is not a local domain"),
    (["add", "x@example.com", "regex:(:y"], "regex:<pattern>:<replacement>"),
    (["add", "x@example.com", "not an address"], "is not an address"),
    (["add", "not a source", "alice@example.com"], "is not a mapping source"),
    (["remove", "x@example.com", "alice@example.com"], "no mapping x@example.com"),
    (["remove", "x@example.com"], "no mapping for x@example.com"),
])
def test_errors_name_the_command_and_what_to_do(capsys, config, args, message):
    code, _out, err = cli(capsys, config, "aliases", *args)
    assert code == 1
    assert err.startswith(f"mailet-mta: aliases {args[0]}: ") and message in err


def test_adding_the_same_mapping_twice_is_an_error(capsys, config):
    assert cli(capsys, config, "aliases", "add", "a@example.com", "b@example.org")[0] == 0
    code, _out, err = cli(capsys, config, "aliases", "add", "A@Example.com", "b@example.org")
    assert code == 1 and "already exists" in err
