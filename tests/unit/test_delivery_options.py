"""RemoteDelivery parameters: delayTime, retries, TLS and gateway settings."""

from __future__ import annotations

import pytest
import pytest_twisted

from mailet_mta.api import ConfigurationError, MailAddress, MailetConfig
from mailet_mta.api import parse_host_list as parse_gateways
from mailet_mta.delivery.options import DeliveryOptions
from mailet_mta.mail import Mail
from mailets.mailets.remote_delivery import RemoteDelivery, parse_delay_time


def mailet(**params) -> RemoteDelivery:
    m = RemoteDelivery()
    m.init(MailetConfig("RemoteDelivery", context=None, parameters=params))
    return m


def test_delay_time_expands_repeat_counts_and_units():
    assert parse_delay_time("5*5 minutes, 3*1 hour") == [300.0] * 5 + [3600.0] * 3
    assert parse_delay_time("2 * 10 sec, 1 day, 500 msec") == [10.0, 10.0, 86400.0, 0.5]


def test_delay_time_without_unit_is_in_milliseconds_as_in_james():
    assert parse_delay_time("5000, 100000, 500000") == [5.0, 100.0, 500.0]


@pytest.mark.parametrize("bad", ["5 fortnights", "x*5 minutes", "", "0*5 minutes", "5 minutes;"])
def test_delay_time_with_bad_item_is_refused(bad):
    with pytest.raises(ConfigurationError):
        parse_delay_time(bad)


def test_max_retries_defaults_to_the_number_of_delays_when_more_than_five():
    assert mailet(delayTime="8*1 minute").options["maxRetries"] == 8
    assert mailet(delayTime="2*1 minute").options["maxRetries"] == 5


def test_defaults_follow_james():
    opts = mailet().options
    assert opts["delays"] == [21600.0]
    assert opts["maxDnsProblemRetries"] == 0
    assert opts["timeout"] == 180.0 and opts["connectionTimeout"] == 60.0
    assert opts["sendPartial"] is False and opts["bounceProcessor"] == "bounces"
    assert opts["startTLS"] == "opportunistic" and opts["verifyServerIdentity"] is False


def test_timeout_without_unit_is_in_milliseconds():
    assert mailet(timeout="30000", connectiontimeout="5 seconds").options["timeout"] == 30.0
    assert mailet(connectiontimeout="5 seconds").options["connectionTimeout"] == 5.0


@pytest.mark.parametrize("params", [
    {"maxRetries": "many"}, {"maxRetries": "-1"}, {"startTLS": "sometimes"},
    {"timeout": "0"}, {"gateway": "relay.example:notaport"}, {"gateway": "relay:70000"},
    {"gatewayUsername": "u"}, {"gatewayUsername": "u", "gatewayPassword": "p"},
    {"sendpartial": "perhaps"}, {"delayTime": "soon"}, {"unknownParam": "1"},
    {"outgoing": " "},
])
def test_invalid_parameters_are_refused_at_init(params):
    with pytest.raises(ConfigurationError):
        mailet(**params)


def test_gateway_list_with_ports_and_ipv6():
    assert parse_gateways("a.example, b.example:2525, [::1]:26", 25) == [
        ["a.example", 25], ["b.example", 2525], ["::1", 26]]
    opts = mailet(gateway="relay.example", gatewayPort="587", gatewayUsername="u",
                  gatewayPassword="p").options
    assert opts["gateways"] == [["relay.example", 587]]


def test_required_starttls_verifies_the_server_unless_told_not_to():
    assert mailet(startTLS="required").options["verifyServerIdentity"] is True
    assert mailet(startTLS="required",
                  verifyServerIdentity="false").options["verifyServerIdentity"] is False
    assert mailet(startTLS="false").options["startTLS"] == "never"


def test_required_processors_are_bounce_processor_and_on_success():
    assert mailet(bounceProcessor="b2").required_processors() == ["b2"]
    assert mailet(onSuccess="sent").required_processors() == ["bounces", "sent"]


class RecordingContext:
    def __init__(self, attributes=None):
        self.queued = []
        self.attributes = attributes or {}

    def get_attribute(self, name):
        return self.attributes.get(name)

    def queue_remote(self, mail, queue="outgoing", options=None):
        from twisted.internet import defer

        self.queued.append((mail, queue, options))
        return defer.succeed(None)


@pytest_twisted.ensureDeferred
async def test_service_queues_with_the_parsed_options_and_ghosts_the_mail():
    import json

    ctx = RecordingContext()
    m = RemoteDelivery()
    m.init(MailetConfig("RemoteDelivery", context=ctx,
                        parameters={"outgoing": "out2", "delayTime": "1 minute"}))
    mail = Mail(sender=MailAddress.parse("a@b.test"),
                recipients=[MailAddress.parse("c@d.test")], message=b"x")
    await m.service(mail)
    assert mail.state == "ghost"
    (queued, queue, options), = ctx.queued
    assert queued is mail and queue == "out2" and options["delays"] == [60.0]
    json.dumps(options)   # must be JSON-serialisable
    assert DeliveryOptions.from_dict(options).delays == (60.0,)


def test_retry_schedule_repeats_the_last_delay_then_gives_up():
    opts = DeliveryOptions.from_dict({"delays": [60, 600], "maxRetries": 4})
    assert [opts.delay_after(n) for n in range(1, 6)] == [60, 600, 600, 600, None]


def test_retry_schedule_with_zero_retries_gives_up_after_the_first_attempt():
    assert DeliveryOptions.from_dict({"maxRetries": 0}).delay_after(1) is None


def test_the_gateway_password_is_not_part_of_the_queued_options():
    opts = mailet(gateway="relay.example:587", gatewayUsername="u",
                  gatewayPassword="s3cret").options
    assert opts["gateways"] == [["relay.example", 587]] and opts["gatewayUsername"] == "u"
    assert "s3cret" not in repr(opts) and "gatewayPassword" not in opts


def test_the_smarthost_is_the_gateway_unless_the_mailet_names_its_own():
    from mailet_mta.api import ATTR_SMARTHOST

    ctx = RecordingContext({ATTR_SMARTHOST: {"gateways": [["smart.example", 587]],
                                             "username": "mailer"}})
    m = RemoteDelivery()
    m.init(MailetConfig("RemoteDelivery", context=ctx, parameters={}))
    assert m.options["gateways"] == [["smart.example", 587]]
    assert m.options["gatewayUsername"] == "mailer"
    own = RemoteDelivery()
    own.init(MailetConfig("RemoteDelivery", context=ctx,
                          parameters={"gateway": "other.example"}))
    assert own.options["gateways"] == [["other.example", 25]]
    assert own.options["gatewayUsername"] is None
