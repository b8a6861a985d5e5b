"""The plugin test kit: a mail builder, a fake context and ``run`` for mailet authors."""

from __future__ import annotations

import pytest
from twisted.internet import defer

from mailet_mta.api import ConfigurationError, GenericMailet, IMailetContext
from mailet_mta.testing import FakeMailContext, fake_mail, run
from mailets.mailets.to_processor import ToProcessor


def test_fake_mail_builds_a_plain_message_from_its_arguments():
    mail = fake_mail(sender=None, recipients=["a@example.com", "b@example.org"],
                     subject="Hi", body="text\n", state="transport", auth_user="a")
    assert mail.sender is None and [str(r) for r in mail.recipients] == [
        "a@example.com", "b@example.org"]
    assert mail.message["Subject"] == "Hi" and mail.message_bytes().endswith(b"\r\n\r\ntext\r\n")
    assert (mail.state, mail.auth_user) == ("transport", "a")


def test_the_fake_context_provides_the_interface_and_records_effects():
    ctx = FakeMailContext(domains=["example.com"], users=["bob@example.com"])
    assert IMailetContext.providedBy(ctx)
    mailet = ctx.mailet(ToProcessor, processor="spam")
    mail = fake_mail()
    run(mailet.service(mail))
    assert mail.state == "spam"
    assert ctx.is_local_email("bob@example.com") and not ctx.is_local_server("x.org")


def test_a_bad_parameter_comes_out_of_the_builder():
    with pytest.raises(ConfigurationError, match="ToProcessor"):
        FakeMailContext().mailet(ToProcessor)


def test_run_gives_a_coroutine_value_and_refuses_an_unfired_deferred():
    class Waits(GenericMailet):
        async def service(self, mail):
            return await defer.succeed("done")

    assert run(FakeMailContext().mailet(Waits).service(fake_mail())) == "done"
    with pytest.raises(AssertionError, match="did not fire"):
        run(defer.Deferred())
