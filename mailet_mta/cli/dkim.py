"""``mailet-mta dkim keygen|check``: DKIM signing keys and their DNS records."""

from __future__ import annotations

import os
from pathlib import Path

from ..storage.private_files import make_private_dir, open_private
from .common import CLIError, add_config_argument, load_config

TXT_STRING_LIMIT = 255        # octets per character-string of a TXT record (RFC 1035)


def register(subparsers) -> None:
    parser = subparsers.add_parser("dkim", help="DKIM signing keys and DNS records")
    commands = parser.add_subparsers(dest="dkim_command", metavar="COMMAND", required=True)
    keygen = commands.add_parser(
        "keygen", help="write a new private key (mode 0600) and print its DNS record")
    keygen.add_argument("domain")
    keygen.add_argument("--selector", default="mail", help="DKIM selector (default: mail)")
    keygen.add_argument("--algorithm", choices=("ed25519", "rsa"), default="ed25519",
                        help="ed25519 (RFC 8463, default) or rsa (2048 bits)")
    keygen.add_argument("--output", metavar="FILE",
                        help="key file (default: dkim/DOMAIN.SELECTOR.key under the "
                             "configuration's data directory)")
    keygen.add_argument("--force", action="store_true", help="replace an existing file")
    keygen.set_defaults(func=keygen_command)
    check = commands.add_parser(
        "check", help="look the DNS record up and compare it with the key")
    check.add_argument("domain")
    check.add_argument("--selector", default="mail", help="DKIM selector (default: mail)")
    check.add_argument("--key", metavar="FILE",
                       help="key file (default: the one keygen wrote)")
    check.set_defaults(func=check_command)
    for sub in (keygen, check):
        add_config_argument(sub)


def default_key_path(config, domain: str, selector: str) -> Path:
    """Where ``keygen`` writes a key when not told: <data_dir>/dkim/DOMAIN.SELECTOR.key."""
    return Path(config.storage.data_dir) / "dkim" / f"{domain}.{selector}.key"


def record_name(domain: str, selector: str) -> str:
    return f"{selector}._domainkey.{domain}"


def zone_line(domain: str, selector: str, record: str) -> str:
    """The record as a zone-file line, split in strings of at most 255 octets."""
    parts = [record[i:i + TXT_STRING_LIMIT] for i in range(0, len(record), TXT_STRING_LIMIT)]
    quoted = " ".join(f'"{p}"' for p in parts)
    return f"{record_name(domain, selector)}. IN TXT ( {quoted} )"


def keygen_command(args) -> int:
    from mailets.dkim_keys import generate_key

    domain = args.domain.lower().rstrip(".")
    config = load_config(args)
    path = Path(args.output) if args.output else default_key_path(config, domain,
                                                                     args.selector)
    if path.exists() and not args.force:
        raise CLIError(f"{path} exists: pass --force to replace it, or choose another "
                       "--selector")
    key = generate_key(args.algorithm)
    make_private_dir(path.parent)
    with open_private(path) as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(key.private + b"\n")
    print(f"private key written to {path} (mode 0600)")
    print("publish this DNS record:")
    print(zone_line(domain, args.selector, key.public_record()))
    print("and sign with the DKIMSign mailet, parameter keys = "
          f"{domain}:{args.selector}:{path.resolve()}")
    return 0


def check_command(args) -> int:
    from mailets.dkim_keys import DKIMKeyError, read_key, record_tags

    domain = args.domain.lower().rstrip(".")
    config = load_config(args)
    path = args.key or default_key_path(config, domain, args.selector)
    try:
        key = read_key(str(path))
    except DKIMKeyError as exc:
        raise CLIError(str(exc)) from None
    name = record_name(domain, args.selector)
    records = _lookup_txt(config, name)
    wanted = record_tags(key.public_record())
    keys = [r for r in records if record_tags(r).get("p") is not None]
    if not keys:
        raise CLIError(f"no DKIM key record at {name}: publish\n"
                       f"{zone_line(domain, args.selector, key.public_record())}")
    if len(keys) > 1:
        raise CLIError(f"{len(keys)} key records at {name}: verifiers refuse the "
                       "selector; keep one")
    found = record_tags(keys[0])
    if found.get("p") != wanted["p"] or found.get("k", "rsa") != wanted["k"]:
        raise CLIError(f"the record at {name} does not match {path}: publish\n"
                       f"{zone_line(domain, args.selector, key.public_record())}")
    print(f"{name}: the published {wanted['k']} key matches {path}")
    return 0


def _lookup_txt(config, name: str) -> list[bytes]:
    """The TXT records of ``name`` through the server's resolver settings (``dns``)."""
    from twisted.internet import reactor

    from ..delivery.resolver import DNSTemporaryError, Resolver

    outcome: list = []
    d = Resolver(config.dns).records(name, "TXT")
    d.addBoth(outcome.append)
    d.addBoth(lambda _: reactor.callLater(0, reactor.stop))
    reactor.run(installSignalHandlers=False)
    result = outcome[0]
    if not isinstance(result, list):
        if result.check(DNSTemporaryError):
            raise CLIError(f"DNS lookup of {name} failed: {result.value}; check the "
                           "dns settings and try again")
        result.raiseException()
    return result
