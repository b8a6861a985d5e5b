"""``mailet-mta init DIR``: a working server for one domain in one command.

Writes ``DIR/mailet-mta.yaml`` (commented; ``--xml`` adds the same server as
``DIR/config.xml``), creates the data directory and the database, makes a self-signed
certificate for STARTTLS, SMTPS and POP3S (or uses ``--certificate``/``--private-key``),
checks the result exactly as ``check-config`` does, and prints the next commands.
What it creates is private whatever the umask: directories 0700, the configuration,
the key and the database 0600 (the certificate stays readable).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import sys
from pathlib import Path

from ..storage.private_files import PRIVATE_FILE, make_private_dir, open_private, write_private
from .common import CLIError

# (name, local port, standard port) of each listener init writes.
PORTS = {"smtp": (2525, 25), "submission": (5870, 587), "submissions": (4650, 465),
         "pop3": (1110, 110), "pop3s": (9950, 995), "imap": (1143, 143),
         "imaps": (9930, 993)}


def register(sub) -> None:
    p = sub.add_parser("init", help="write a configuration, data directory, database and "
                                    "TLS certificate for a new server")
    p.add_argument("dir", help="directory to create (the configuration goes in it)")
    p.add_argument("--domain", default="localhost",
                   help="the mail domain this server receives for (default: localhost)")
    p.add_argument("--hostname", help="the server's own name (HELO, certificate); "
                                      "default: mail.DOMAIN, or localhost")
    p.add_argument("--xml", action="store_true",
                   help="also write the James-style config.xml describing the same server")
    p.add_argument("--certificate", metavar="PEM",
                   help="use this certificate (chain) instead of a self-signed one")
    p.add_argument("--private-key", metavar="PEM", help="the key of --certificate")
    p.add_argument("--standard-ports", action="store_true",
                   help="listen on 25, 587, 465, 110 and 995 on every interface "
                        "(default: 2525, 5870, 4650, 1110 and 9950 on 127.0.0.1)")
    p.add_argument("--data-dir", metavar="PATH",
                   help="database and message files (default: DIR/var)")
    p.add_argument("--force", action="store_true",
                   help="overwrite an existing configuration in DIR")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..api import ConfigurationError
    from ..config.validate import check_domain
    from .init_templates import render_xml, render_yaml, standard_pipeline

    target = Path(args.dir).expanduser().resolve()
    try:
        domain = check_domain(args.domain, "--domain", None)
    except ConfigurationError as exc:
        raise CLIError(f"init: {exc}") from None
    hostname = args.hostname or (domain if domain == "localhost" else f"mail.{domain}")
    yaml_path, xml_path = target / "mailet-mta.yaml", target / "config.xml"
    for path in (yaml_path, xml_path if args.xml else None):
        if path is not None and path.exists() and not args.force:
            raise CLIError(f"init: {path} already exists; pass --force to overwrite it")
    if bool(args.certificate) != bool(args.private_key):
        raise CLIError("init: --certificate and --private-key go together")
    make_private_dir(target)
    data_dir = Path(args.data_dir).expanduser().resolve() if args.data_dir else target / "var"
    make_private_dir(data_dir)
    cert, key = _certificate(args, target, hostname, domain)
    settings = {
        "domain": domain, "hostname": hostname, "config_path": str(yaml_path),
        "data_dir": str(data_dir),
        "certificate": str(cert), "private_key": str(key),
        "ports": {n: (std if args.standard_ports else local)
                  for n, (local, std) in PORTS.items()},
        "interface": None if args.standard_ports else "127.0.0.1",
        "production": args.standard_ports,
        "pipeline": standard_pipeline(_remote_delivery_available()),
    }
    write_private(yaml_path, render_yaml(settings))   # may later hold a gateway password
    written = [yaml_path]
    if args.xml:
        write_private(xml_path, render_xml(settings))
        written.append(xml_path)
    for path in written:
        _check(path)
    postmaster = _create_database(yaml_path)
    _print_next(target, yaml_path, written, settings, cert_generated=not args.certificate,
                postmaster=postmaster)
    return 0


def _remote_delivery_available() -> bool:
    """Whether RemoteDelivery, Bounce and DSNBounce are installed in this tree."""
    from ..api import ConfigurationError
    from ..spool.registry import resolve

    try:
        for name in ("RemoteDelivery", "Bounce", "DSNBounce"):
            resolve("mailet", name)
    except ConfigurationError:
        return False
    return True


def _certificate(args, target: Path, hostname: str, domain: str) -> tuple[Path, Path]:
    if args.certificate:
        cert, key = Path(args.certificate).resolve(), Path(args.private_key).resolve()
        for path in (cert, key):
            if not path.is_file():
                raise CLIError(f"init: {path} is not a file")
        return cert, key
    tls_dir = target / "tls"
    make_private_dir(tls_dir)
    cert, key = tls_dir / "cert.pem", tls_dir / "key.pem"
    if cert.exists() and key.exists() and not args.force:
        return cert, key            # keep a certificate made (or replaced) earlier
    write_self_signed(cert, key, sorted({hostname, domain, "localhost"}))
    return cert, key


def write_self_signed(cert_path: Path, key_path: Path, names: list[str],
                      days: int = 825) -> None:
    """A self-signed certificate for ``names`` (and 127.0.0.1, ::1); the key is 0600."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    alt = [x509.DNSName(n) for n in names] + [
        x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256()))
    with open_private(key_path) as out:
        os.fchmod(out.fileno(), PRIVATE_FILE)
        out.write(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))


def _check(path: Path) -> None:
    """Load and build the pipeline, as ``check-config`` does; a failure is a bug here."""
    from ..api import ConfigurationError
    from ..config import load_config
    from ..spool.processor import Pipeline
    from .check_config import _CheckContext

    try:
        config = load_config(path)
        Pipeline(config.spoolmanager, _CheckContext(config))
    except ConfigurationError as exc:
        raise CLIError(f"init wrote a configuration that does not load ({exc}); "
                       f"please report this") from None


def _create_database(config_path: Path) -> None:
    from ..config import load_config
    from ..storage.db import Database
    from .common import database_url

    config = load_config(config_path)
    db = Database(database_url(config), config.storage.pool_size)
    try:
        db.upgrade()
        with db.transaction() as conn:
            return _create_postmaster(conn, config)
    finally:
        db.engine.dispose()


# A stored hash no password verifies against: the account receives mail, and nobody
# can log in until ``users passwd`` sets a password.
LOCKED_PASSWORD = "!locked"


def _create_postmaster(conn, config) -> str | None:
    """The postmaster's mailbox (RFC 5321 §4.5.1: every domain has one), login locked;
    the address when it was created now, None when it (or an alias) exists already."""
    from ..directory import Directory, configured_mappings, load_tables
    from ..storage import users

    directory = Directory(None, config.servernames, config.postmaster_address,
                          configured_mappings(config.spoolmanager))
    directory.apply(load_tables(conn))
    if directory.postmaster_problem() is None:
        return None
    return users.add_user(conn, config.postmaster_address, LOCKED_PASSWORD,
                          config.servernames)


def _print_next(target, yaml_path, written, settings, cert_generated: bool,
                postmaster: str | None = None) -> None:
    ports, domain = settings["ports"], settings["domain"]
    host = settings["interface"] or "127.0.0.1"
    exe = _command_name()
    out = sys.stdout
    for path in written:
        print(f"wrote {path}", file=out)
    print(f"data directory and database: {settings['data_dir']}", file=out)
    how = "self-signed, for testing" if cert_generated else "given"
    print(f"TLS certificate ({how}): {settings['certificate']}", file=out)
    if not settings["pipeline"]["remote"]:
        print("note: remote delivery is not installed; mail to other domains is kept in "
              "the repository outgoing-hold", file=out)
    if postmaster:
        print(f"created the mailbox of the postmaster {postmaster} (no login until you set "
              f"a password)", file=out)
    print("\nnext:", file=out)
    print(f"  {exe} users passwd postmaster@{domain} --config {yaml_path}", file=out)
    print(f"  {exe} serve --config {yaml_path}", file=out)
    print(f"  swaks --server {host}:{ports['smtp']} --from you@example.org "
          f"--to postmaster@{domain} && curl -s --user postmaster@{domain}:PASSWORD "
          f"pop3://{host}:{ports['pop3']}/1", file=out)


def _command_name() -> str:
    """How the user ran us: ``mailet-mta`` when that is on PATH, else the path used."""
    import shutil

    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if Path(argv0).name != "mailet-mta":
        return f"{Path(sys.executable).name} -m mailet_mta"
    on_path = shutil.which("mailet-mta")
    if on_path and Path(on_path).resolve() == Path(argv0).resolve():
        return "mailet-mta"
    return argv0
