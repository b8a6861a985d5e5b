"""IsRemoteDeliveryPermanentError / IsRemoteDeliveryTemporaryError: route the failure
reports of remote delivery (in ``bounceProcessor``) by the kind of error.

Remote delivery sets ``mailet_mta.delivery.error`` to ``{recipient: {code, text,
permanent}}``; these matchers return the recipients whose error is permanent (a 5xx, a
domain that does not exist) or temporary (retries used up after 4xx or timeouts).
"""

from __future__ import annotations

from mailet_mta.api import GenericMatcher, Mail, MailAddress

ERROR_ATTR = "mailet_mta.delivery.error"


def _recipients_where(mail: Mail, permanent: bool) -> list[MailAddress]:
    errors = mail.get_attribute(ERROR_ATTR) or {}
    return [r for r in mail.recipients
            if str(r) in errors and bool(errors[str(r)].get("permanent", True)) == permanent]


class IsRemoteDeliveryPermanentError(GenericMatcher):
    """Recipients whose remote delivery failed permanently."""

    takes_condition = False

    def match(self, mail: Mail) -> list[MailAddress]:
        return _recipients_where(mail, True)


class IsRemoteDeliveryTemporaryError(GenericMatcher):
    """Recipients whose remote delivery failed temporarily until the retries ran out."""

    takes_condition = False

    def match(self, mail: Mail) -> list[MailAddress]:
        return _recipients_where(mail, False)
