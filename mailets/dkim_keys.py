"""DKIM private keys: read, made, and the DNS record that publishes them.

Two algorithms: ``ed25519`` (RFC 8463: the file holds the base64 of the 32-octet seed,
as dkimpy's ``dknewkey`` writes it) and ``rsa`` (RFC 6376: a PKCS#1 PEM file,
``-----BEGIN RSA PRIVATE KEY-----``). The algorithm is told by the file's contents.
The key record is ``v=DKIM1; k=…; p=<base64 public key>`` at
``<selector>._domainkey.<domain>``.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dkim.util import parse_tag_value

RSA_BITS = 2048          # RFC 8301 §3.2: signers MUST use at least 1024, SHOULD 2048
ALGORITHMS = {"ed25519": b"ed25519-sha256", "rsa": b"rsa-sha256"}


class DKIMKeyError(ValueError):
    """A key file that is not a DKIM private key (the message names the file)."""


@dataclass(frozen=True)
class SigningKey:
    """A private key as dkimpy takes it, with its algorithm (``ed25519`` or ``rsa``)."""

    algorithm: str
    private: bytes        # PEM (rsa) or base64 seed (ed25519)

    @property
    def signature_algorithm(self) -> bytes:
        return ALGORITHMS[self.algorithm]

    def public_record(self) -> str:
        """The TXT record value to publish for this key."""
        if self.algorithm == "rsa":
            key = serialization.load_pem_private_key(self.private, password=None)
            der = key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"
        seed = base64.b64decode(self.private)
        public = ed25519.Ed25519PrivateKey.from_private_bytes(seed).public_key()
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"


def parse_key(data: bytes, source: str = "key") -> SigningKey:
    """The SigningKey held in ``data`` (the contents of the file ``source``)."""
    text = data.strip()
    if text.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text, password=None)
        except (ValueError, TypeError) as exc:
            raise DKIMKeyError(f"{source}: not a PEM private key ({exc})") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise DKIMKeyError(f"{source}: a PEM key must be RSA (ed25519 keys are "
                               "stored as the base64 seed; use 'mailet-mta dkim keygen')")
        pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
        return SigningKey("rsa", pem)
    try:
        seed = base64.b64decode(text, validate=True)
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise DKIMKeyError(f"{source}: neither an RSA PEM key nor a base64 ed25519 seed "
                           "(32 octets); make one with 'mailet-mta dkim keygen'")
    return SigningKey("ed25519", text)


def read_key(path: str) -> SigningKey:
    """Read and parse the key file at ``path``."""
    try:
        with open(path, "rb") as f:
            return parse_key(f.read(), path)
    except OSError as exc:
        raise DKIMKeyError(f"{path}: cannot read the DKIM key ({exc.strerror})") from None


def generate_key(algorithm: str = "ed25519") -> SigningKey:
    """A new private key of ``algorithm`` (``ed25519`` or ``rsa``, 2048 bits)."""
    if algorithm == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
        return SigningKey("rsa", pem)
    if algorithm != "ed25519":
        raise DKIMKeyError(f"algorithm {algorithm!r}: use ed25519 or rsa")
    seed = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
        serialization.NoEncryption())
    return SigningKey("ed25519", base64.b64encode(seed))


def record_tags(record: bytes | str) -> dict[str, str]:
    """The ``tag=value`` pairs of a key record, parsed by dkimpy (for comparing
    ``k=`` and ``p=``)."""
    data = record.encode() if isinstance(record, str) else record
    try:
        tags = parse_tag_value(data)
    except Exception:  # noqa: BLE001 - dkimpy's InvalidTagValueList and friends
        return {}
    return {k.decode().lower(): b"".join(v.split()).decode("ascii", "replace")
            for k, v in tags.items()}
