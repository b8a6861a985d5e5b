"""``SRS``: the envelope sender of forwarded mail rewritten into our domain."""

from __future__ import annotations

from mailet_mta.api import GenericMailet, Mail, MailAddressError

from ..sender_rewriting import PARAMETERS, SenderRewriting, from_parameters

ATTR_SRS = "mailet_mta.srs"


class SRS(GenericMailet):
    """Rewrites the envelope sender of mail leaving for another domain with SRS
    (``SRS0=HHHH=TT=a.example=alice@our.example``, the libsrs2/postsrsd format) so
    that SPF passes at the next hop for mail an alias or forward sends on, as Postfix
    does with postsrsd. Senders of our own domains, SRS addresses of ours and the null
    sender are left alone. A bounce to the rewritten address is accepted at RCPT when
    its hash and age check out and goes back to the original sender; a forged or
    expired one is refused with ``550 5.7.1`` (the SMTP server and the recipient
    rewrite table read this mailet's parameters; see docs/authentication.md).

    Parameters: ``secretFile`` (required: a file of secrets, one a line, at least 16
    characters each; the first signs, all are accepted back, so a new one goes on the
    first line and the old one stays ``maxAge`` days), ``domain`` (the domain of the
    rewritten addresses, default the server name; it must be one of the server's
    domains, or bounces to it are relayed elsewhere instead of coming back),
    ``maxAge`` (days a rewritten address is accepted back, default 21),
    ``hashLength`` (characters of the hash, default 4, at least 4).
    The attribute ``mailet_mta.srs`` keeps the original sender.
    """

    info = "rewrites the envelope sender of forwarded mail (SRS)"
    parameters = PARAMETERS

    def init_mailet(self) -> None:
        try:
            self.rewriting: SenderRewriting = from_parameters(
                self.config.parameters, self.context.server_name)
        except ValueError as exc:
            self.fail(str(exc))

    def service(self, mail: Mail) -> None:
        sender = mail.sender
        if sender is None or self.context.is_local_server(sender.domain):
            return
        try:
            rewritten = self.rewriting.forward(sender)
        except MailAddressError as exc:
            self.log.warn("SRS: mail {mail_name}: sender <{sender}> kept, its SRS form "
                          "is not a valid address ({error})", mail_name=mail.name,
                          sender=str(sender), error=str(exc))
            return
        mail.set_attribute(ATTR_SRS, str(sender))
        mail.sender = rewritten
