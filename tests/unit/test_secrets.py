"""Signing secret and database credential caches, with a fake Secrets Manager reader."""

from __future__ import annotations

import json

import pytest

from payment_webhook.dal.secrets import (
    DatabaseCredentialsCache,
    SigningSecretCache,
    parse_database_credentials,
    parse_signing_secrets,
)
from payment_webhook.deadline import Deadline
from payment_webhook.errors import SecretFormatError, SecretStoreUnreachable

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:test"


class FakeReader:
    """Returns its current value and counts the reads."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.reads = 0
        self.fail = False

    def get_secret_string(self, secret_id: str, deadline: Deadline) -> str:
        self.reads += 1
        if self.fail:
            raise SecretStoreUnreachable(f"GetSecretValue for {secret_id} failed")
        return self.value


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def deadline() -> Deadline:
    return Deadline.after(10)


def test_single_signing_secret_parsed() -> None:
    """A plain value is one secret, surrounding whitespace removed."""
    assert parse_signing_secrets(" whsec_one\n", ARN) == ("whsec_one",)


def test_signing_secret_array_parsed_in_order() -> None:
    """A JSON array gives every secret, newest first."""
    assert parse_signing_secrets('["whsec_new", "whsec_old"]', ARN) == ("whsec_new", "whsec_old")


def test_signing_secret_json_string_parsed() -> None:
    """A secret stored as a JSON string, quotes included, is that one secret."""
    assert parse_signing_secrets('"whsec_one"', ARN) == ("whsec_one",)


@pytest.mark.parametrize(
    "value",
    ["", "  ", "[]", '["whsec_1", 2]', '["whsec_1", ""]', "[not json", '{"a": 1}', '""', '"whsec_1', '"a" "b"'],
)
def test_invalid_signing_secret_value_rejected(value: str) -> None:
    """Empty values and arrays that are not non-empty strings are rejected."""
    with pytest.raises(SecretFormatError):
        parse_signing_secrets(value, ARN)


@pytest.mark.parametrize("value", ['["whsec_leak", 5]', '"whsec_leak', '{"k": "whsec_leak"}'])
def test_signing_secret_error_does_not_contain_value(value: str) -> None:
    """The format error names the ARN and never the value."""
    with pytest.raises(SecretFormatError) as caught:
        parse_signing_secrets(value, ARN)
    assert ARN in str(caught.value)
    assert "whsec_leak" not in str(caught.value)


def test_database_credentials_parsed() -> None:
    """The RDS secret's username and password are read."""
    credentials = parse_database_credentials(
        json.dumps({"username": "app", "password": "pw", "engine": "postgres"}), ARN
    )
    assert credentials.username == "app"
    assert credentials.password == "pw"


def test_database_password_not_in_repr() -> None:
    """The password never appears in the credentials' repr."""
    assert "s3cret" not in repr(parse_database_credentials('{"username": "app", "password": "s3cret"}', ARN))


@pytest.mark.parametrize(
    "value", ["not json", "[]", '{"username": "app"}', '{"password": "pw"}', '{"username": "", "password": "pw"}']
)
def test_invalid_database_secret_rejected(value: str) -> None:
    """A value without string username and password is rejected."""
    with pytest.raises(SecretFormatError):
        parse_database_credentials(value, ARN)


def test_signing_cache_reads_once() -> None:
    """Repeated get calls read the secret once."""
    reader = FakeReader("whsec_one")
    cache = SigningSecretCache(reader, ARN)
    cache.get(deadline())
    cache.get(deadline())
    assert reader.reads == 1


def test_signing_cache_skips_refresh_within_interval() -> None:
    """A mismatch within 60 s of the last read does not read again."""
    reader, clock = FakeReader("whsec_one"), FakeClock()
    cache = SigningSecretCache(reader, ARN, clock=clock)
    cache.get(deadline())
    clock.now += 59
    assert cache.refresh_after_mismatch(deadline()) is None
    assert reader.reads == 1


def test_signing_cache_refreshes_after_interval() -> None:
    """A mismatch 60 s after the last read returns the rotated secrets."""
    reader, clock = FakeReader("whsec_one"), FakeClock()
    cache = SigningSecretCache(reader, ARN, clock=clock)
    cache.get(deadline())
    reader.value = '["whsec_two", "whsec_one"]'
    clock.now += 60
    assert cache.refresh_after_mismatch(deadline()) == ("whsec_two", "whsec_one")
    assert cache.get(deadline()) == ("whsec_two", "whsec_one")


def test_signing_cache_refresh_rate_limited() -> None:
    """Two mismatches in a row after the interval cause one read, not two."""
    reader, clock = FakeReader("whsec_one"), FakeClock()
    cache = SigningSecretCache(reader, ARN, clock=clock)
    cache.get(deadline())
    clock.now += 61
    cache.refresh_after_mismatch(deadline())
    cache.refresh_after_mismatch(deadline())
    assert reader.reads == 2


def test_signing_cache_failed_refresh_counts_as_attempt() -> None:
    """A refresh that fails is not retried before the interval passes again."""
    reader, clock = FakeReader("whsec_one"), FakeClock()
    cache = SigningSecretCache(reader, ARN, clock=clock)
    cache.get(deadline())
    clock.now += 61
    reader.fail = True
    with pytest.raises(SecretStoreUnreachable):
        cache.refresh_after_mismatch(deadline())
    assert cache.refresh_after_mismatch(deadline()) is None


def test_signing_cache_rereads_after_max_age() -> None:
    """get reads the secret again once the cached value is 300 s old."""
    reader, clock = FakeReader("whsec_one"), FakeClock()
    cache = SigningSecretCache(reader, ARN, clock=clock)
    cache.get(deadline())
    reader.value = "whsec_two"
    clock.now += 300
    assert cache.get(deadline()) == ("whsec_two",)


def test_signing_cache_keeps_value_before_max_age() -> None:
    """get does not read again while the cached value is younger than 300 s."""
    reader, clock = FakeReader("whsec_one"), FakeClock()
    cache = SigningSecretCache(reader, ARN, clock=clock)
    cache.get(deadline())
    clock.now += 299
    cache.get(deadline())
    assert reader.reads == 1


def test_signing_cache_failed_periodic_reread_keeps_cached() -> None:
    """A failed re-read after the maximum age returns the cached secrets instead of raising."""
    reader, clock = FakeReader("whsec_one"), FakeClock()
    cache = SigningSecretCache(reader, ARN, clock=clock)
    cache.get(deadline())
    reader.fail = True
    clock.now += 301
    assert cache.get(deadline()) == ("whsec_one",)


def test_signing_cache_failed_periodic_reread_waits_interval() -> None:
    """After a failed periodic re-read, the next attempt waits for the 60 s interval."""
    reader, clock = FakeReader("whsec_one"), FakeClock()
    cache = SigningSecretCache(reader, ARN, clock=clock)
    cache.get(deadline())
    reader.fail = True
    clock.now += 301
    cache.get(deadline())
    clock.now += 59
    cache.get(deadline())
    assert reader.reads == 2


def test_signing_cache_malformed_periodic_value_keeps_cached() -> None:
    """A value of the wrong shape found by the periodic re-read leaves the cached secrets in use."""
    reader, clock = FakeReader("whsec_one"), FakeClock()
    cache = SigningSecretCache(reader, ARN, clock=clock)
    cache.get(deadline())
    reader.value = '{"not": "a secret"}'
    clock.now += 301
    assert cache.get(deadline()) == ("whsec_one",)


def test_signing_cache_older_match_rereads_after_interval() -> None:
    """After an older secret matched, a read 60 s after the last one returns the current secrets."""
    reader, clock = FakeReader('["whsec_two", "whsec_one"]'), FakeClock()
    cache = SigningSecretCache(reader, ARN, clock=clock)
    cache.get(deadline())
    reader.value = "whsec_two"
    clock.now += 60
    assert cache.refresh_after_older_match(deadline()) == ("whsec_two",)


def test_signing_cache_older_match_skipped_within_interval() -> None:
    """After an older secret matched, no read happens within 60 s of the last one."""
    reader, clock = FakeReader('["whsec_two", "whsec_one"]'), FakeClock()
    cache = SigningSecretCache(reader, ARN, clock=clock)
    cache.get(deadline())
    clock.now += 59
    assert cache.refresh_after_older_match(deadline()) is None


def test_signing_cache_older_match_failed_read_returns_none() -> None:
    """A failed read after an older secret matched returns None and keeps the cached secrets."""
    reader, clock = FakeReader('["whsec_two", "whsec_one"]'), FakeClock()
    cache = SigningSecretCache(reader, ARN, clock=clock)
    cache.get(deadline())
    reader.fail = True
    clock.now += 61
    assert cache.refresh_after_older_match(deadline()) is None
    assert cache.get(deadline()) == ("whsec_two", "whsec_one")


def test_database_cache_refresh_reads_again() -> None:
    """refresh replaces the cached credentials with the current value."""
    reader = FakeReader('{"username": "app", "password": "old"}')
    cache = DatabaseCredentialsCache(reader, ARN)
    cache.get(deadline())
    reader.value = '{"username": "app", "password": "new"}'
    assert cache.refresh(deadline()).password == "new"
    assert cache.get(deadline()).password == "new"
