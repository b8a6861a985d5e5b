"""DKIMSign: sign outgoing mail with DKIM (RFC 6376; ed25519-sha256 per RFC 8463)."""

from __future__ import annotations

import dkim

from mailet_mta.api import GenericMailet, Mail, MailAddress

from ..dkim_keys import DKIMKeyError, SigningKey, read_key

DEFAULT_HEADERS = ("from", "to", "cc", "subject", "date", "message-id", "reply-to",
                   "in-reply-to", "references", "mime-version", "content-type",
                   "content-transfer-encoding", "list-id", "list-unsubscribe")
CANONICALIZATIONS = ("simple", "relaxed")
ATTR_DKIM_SIGNED = "mailet_mta.dkim.signed"      # str: "d=<domain> s=<selector>"


class DKIMSign(GenericMailet):
    """Adds a ``DKIM-Signature`` for the domain of the ``From:`` address when a key
    for that domain is configured; mail from other domains passes unsigned (logged).

    Parameters:

    - ``keys`` (required): ``domain:selector:path`` entries, comma separated — the key
      file of each signing domain (``mailet-mta dkim keygen`` makes one). The
      algorithm (ed25519-sha256 or rsa-sha256) follows the key.
    - ``headers``: the header fields to sign (default: From, To, Cc, Subject, Date,
      Message-ID, Reply-To, In-Reply-To, References, MIME-Version, Content-Type,
      Content-Transfer-Encoding, List-Id, List-Unsubscribe; ``from`` is always signed).
    - ``canonicalization``: ``header/body``, each ``simple`` or ``relaxed``
      (default ``relaxed/relaxed``).

    Signing hashes the whole message, so it runs on a mailet worker thread.
    """

    info = "signs mail with DKIM for the sender's domain"
    parameters = ("keys", "headers", "canonicalization")

    def init_mailet(self) -> None:
        self.keys: dict[str, tuple[str, SigningKey]] = {}
        for entry in self.get_list("keys"):
            parts = entry.split(":", 2)
            if len(parts) != 3 or not all(p.strip() for p in parts):
                self.fail(f"keys entry {entry!r}: write domain:selector:/path/to/key")
            domain, selector, path = (p.strip() for p in parts)
            try:
                key = read_key(path)
            except DKIMKeyError as exc:
                self.fail(str(exc))
            self.keys[domain.lower()] = (selector, key)
        if not self.keys:
            self.fail("the parameter 'keys' is required (domain:selector:/path/to/key)")
        headers = [h.lower() for h in self.get_list("headers", DEFAULT_HEADERS)]
        self.headers = [h.encode() for h in dict.fromkeys(["from", *headers])]
        self.canonicalize = self._canonicalization(
            str(self.get_init_parameter("canonicalization", "relaxed/relaxed")))

    def _canonicalization(self, text: str) -> tuple[bytes, bytes]:
        header, _, body = text.strip().lower().partition("/")
        body = body or "simple"       # RFC 6376 §3.5: a missing body part is simple
        if header not in CANONICALIZATIONS or body not in CANONICALIZATIONS:
            self.fail(f"canonicalization {text!r}: write header/body, each simple or "
                       "relaxed (e.g. relaxed/relaxed)")
        return header.encode(), body.encode()

    def signing_domain(self, mail: Mail) -> str | None:
        """The configured domain of the first ``From:`` address, or None."""
        value = mail.headers().get("From")
        addresses = getattr(value, "addresses", ()) if value is not None else ()
        for address in addresses:
            try:
                domain = MailAddress.parse(address.addr_spec).domain.lower()
            except ValueError:
                continue
            return domain if domain in self.keys else None
        return None

    async def service(self, mail: Mail) -> None:
        domain = self.signing_domain(mail)
        if domain is None:
            self.log.info("id={id} not DKIM-signed: no key for the From: domain", id=mail.name)
            return
        selector, key = self.keys[domain]
        await self.context.run_in_worker(self._sign, mail, domain, selector, key)
        mail.set_attribute(ATTR_DKIM_SIGNED, f"d={domain} s={selector}")

    def _sign(self, mail: Mail, domain: str, selector: str, key: SigningKey) -> None:
        data = mail.message_bytes()
        signature = dkim.sign(data, selector.encode(), domain.encode(), key.private,
                              canonicalize=self.canonicalize,
                              signature_algorithm=key.signature_algorithm,
                              include_headers=self.headers)
        mail.set_message_bytes(signature + data)
