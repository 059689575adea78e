"""Kafka driver URLs and secrets: every malformed part of a URL is a DefinitionError naming the
part and the accepted form (before anything connects), and a secret client setting never shows
in the driver's repr, URL, options, error messages or log records.

Only the last test needs a broker (marker ``kafka``); the others need confluent-kafka only.
"""

from __future__ import annotations

import logging
import traceback
from typing import Any

import pytest

import workbench as wb
from workbench.errors import DefinitionError, DriverError

pytest.importorskip("confluent_kafka")

from workbench.drivers.kafka import KafkaDriver, KafkaOptions

FORM = "kafka://host:port[,host:port][?option=value&...]"


def test_good_urls_parse() -> None:
    o = KafkaOptions.from_url("kafka://a:1,b:2?partitions=3&dead_letter=dlq&instance=w1"
                              "&linger.ms=20&consumer.fetch.min.bytes=10&retention_ms=default")
    assert (o.bootstrap, o.partitions, o.dead_letter, o.instance) == ("a:1,b:2", 3, "dlq", "w1")
    assert o.client == {"linger.ms": "20"} and o.consumer == {"fetch.min.bytes": "10"}
    assert o.retention_ms is None
    assert KafkaOptions.from_url("kafka://[::1]:9092").bootstrap == "[::1]:9092"
    assert KafkaOptions.from_url("kafka://broker").bootstrap == "broker"  # librdkafka: 9092
    config = {"partitions": 2, "producer.enable.idempotence": True, "timeout": 1.5}
    o = KafkaOptions.from_url("kafka://h:1?partitions=5", config)
    assert (o.partitions, o.producer, o.timeout) == (2, {"enable.idempotence": "true"}, 1.5)


@pytest.mark.parametrize(("url", "says"), [
    ("kafka://h:abc", "port 'abc' of 'h' is not a number from 1 to 65535"),
    ("kafka://h:0", "port '0' of 'h'"),
    ("kafka://h:70000", "port '70000'"),
    ("kafka://a:1,b:x", "port 'x' of 'b'"),
    ("kafka://:9092", "a broker without a host name"),
    ("kafka://a:1,,b:2", "a broker without a host name"),
    ("kafka://h b:1", "'h b' is not a host name"),
    ("kafka://", "must look like"),
    ("kafka:h:1", "must look like"),
    ("http://h:1", "must look like"),
    ("kafka://h:1/topic", "has a path"),
    ("kafka://alice:pw@h:1", "credentials do not go before the host"),
    ("kafka://h:1?partitons=3", "unknown Kafka driver option 'partitons'"),
    ("kafka://h:1?=3", "an option without a name"),
    ("kafka://h:1?partitions=1&partitions=2", "gives option 'partitions' twice"),
    ("kafka://h:1?partitions=many", "partitions='many'"),
    ("kafka://h:1?partitions=0", "must be an integer >= 1"),
    ("kafka://h:1?partitions=", "must be an integer >= 1"),
    ("kafka://h:1?replication=0", "must be -1 (the broker's default) or an integer >= 1"),
    ("kafka://h:1?retention_ms=-5", "or an integer >= 0"),
    ("kafka://h:1?session_timeout_ms=1.5", "session_timeout_ms='1.5'"),
    ("kafka://h:1?timeout=nan", "must be a number of seconds > 0"),
    ("kafka://h:1?timeout=-1", "must be a number of seconds > 0"),
    ("kafka://h:1?dead_letter=", "dead_letter='' in 'kafka://h:1?dead_letter=' must be a topic"),
    ("kafka://h:1?instance=", "must be a name for this process"),
    ("kafka://h:1?key_serde=jsn", "Did you mean 'json'?"),
    ("kafka://h:1?Linger.MS=5", "is not a librdkafka setting name"),
    ("kafka://h:1?no.such.setting=1", 'No such configuration property: "no.such.setting"'),
    ("kafka://h:1?producer.acks=lots", "producer.acks='lots'"),
    ("kafka://h:1?consumer.fetch.min.bytes=x", "consumer.fetch.min.bytes='x'"),
])
def test_bad_urls_are_definition_errors_naming_the_part(url: str, says: str) -> None:
    with pytest.raises(DefinitionError) as info:
        KafkaDriver(url)
    msg = str(info.value)
    assert says in msg
    if "option" not in msg:  # the URL's structure: the message shows the accepted form
        assert FORM in msg or "credentials" in msg


SECRET = "s3cr3t-Pa55word-do-not-show"
SECRET2 = "an0ther-s3cret-v4lue"
SASL = ("security.protocol=SASL_PLAINTEXT&sasl.mechanism=PLAIN&sasl.username=alice"
        f"&sasl.password={SECRET}")


def _surfaces(driver: KafkaDriver, errors: list[BaseException], caplog: Any) -> str:
    texts = [repr(driver), str(driver), driver.url, repr(driver.options), str(driver.options)]
    for exc in errors:
        texts.append("".join(traceback.format_exception(exc)))  # with every chained cause
    texts += [r.getMessage() for r in caplog.records]
    return "\n".join(texts)


def _expect_error(fn: Any) -> BaseException:
    try:
        fn()
    except (DriverError, DefinitionError) as exc:
        return exc
    raise AssertionError("expected an error")


def test_secrets_never_show_with_an_unreachable_broker(caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"kafka://127.0.0.1:1?timeout=2&{SASL}&consumer.debug=conf,security"
    d = KafkaDriver(url, config={"producer.sasl.oauthbearer.client.secret": SECRET2})
    try:
        errors = [_expect_error(lambda: d.partitions("t")),
                  _expect_error(lambda: d.end_offset("t", 0)),
                  _expect_error(lambda: KafkaDriver(url + "&bogus=1")),
                  _expect_error(lambda: KafkaDriver(url + "&producer.acks=lots"))]
        p = wb.Pipeline("secret-run")
        p.source("secret-in").to("secret-out")
        errors.append(_expect_error(lambda: p.run(url)))
        text = _surfaces(d, errors, caplog)
    finally:
        d.close()
    assert "sasl.password=***" in d.url
    assert any(r.name.startswith("workbench.drivers.kafka") for r in caplog.records)
    assert SECRET not in text and SECRET2 not in text


@pytest.mark.kafka
def test_secrets_never_show_with_a_real_broker(kafka_url: str, caplog: Any) -> None:
    """The shared broker listens PLAINTEXT: a SASL client fails its handshake there, and
    librdkafka's own debug log (which prints the configuration) goes through the driver's
    loggers."""
    caplog.set_level(logging.DEBUG)
    url = f"{kafka_url}?timeout=3&{SASL}&consumer.debug=conf,security"
    d = KafkaDriver(url, config={"producer.sasl.oauthbearer.client.secret": SECRET2})
    try:
        errors = [_expect_error(lambda: d.end_offset("t", 0))]
        text = _surfaces(d, errors, caplog)
    finally:
        d.close()
    assert any("sasl.password" in r.getMessage() for r in caplog.records)  # the config dump
    assert SECRET not in text and SECRET2 not in text
