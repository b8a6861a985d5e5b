"""Self-signed test certificates made with ``cryptography`` (no files shipped)."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def make_cert(directory: str | Path, hostname: str = "localhost") -> tuple[Path, Path]:
    """Write ``cert.pem`` and ``key.pem`` for ``hostname`` (and 127.0.0.1, ::1)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName(hostname), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def make_trusted_certs(directory: str | Path, *hostnames: str
                       ) -> tuple[dict[str, tuple[Path, Path]], Path]:
    """A certificate for each of ``hostnames`` (in its own folder) and ``ca.pem``
    holding them all: the trust roots a client is given (``tlsPolicy.caFile``)."""
    directory = Path(directory)
    made = {name: make_cert(directory / name, name) for name in hostnames}
    bundle = directory / "ca.pem"
    bundle.write_bytes(b"".join(cert.read_bytes() for cert, _key in made.values()))
    return made, bundle
