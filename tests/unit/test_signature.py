"""Stripe signature parsing, computation and timestamp checks, without the handler."""

from __future__ import annotations

import pytest
import stripe

from payment_webhook.errors import MalformedSignature, MissingSignature, TimestampOutsideTolerance
from payment_webhook.logic.signature import (
    check_timestamp,
    compute_signature,
    newest_matching_secret,
    parse_signature_header,
    signature_matches,
)
from payment_webhook.models.signature import SignatureHeader

SECRET = "whsec_test_secret"
TIMESTAMP = 1_700_000_000
BODY = b'{"id":"evt_1"}'
NON_ASCII_BODY = '{"id": "evt_café", "note": "€"}'.encode()
# Computed once with: printf '%s' '1700000000.<body>' | openssl dgst -sha256 -hmac '<secret>'
BODY_SIGNATURE = "248a374f50f943a28b0f6ab50faf9a7e7e29b710fa26df9fb1618b9bf8ea9c9a"
NON_ASCII_BODY_SIGNATURE = "0b57e1eb89430813241bef56421ffb6d2a6338a39eeb34eae7db50789c90604d"
BODY_SIGNATURE_OTHER_SECRET = "d8d091c76b586cff4dbd317fc47ebddff4b86de3ce18d3c03753c3c1901d475a"


def test_compute_signature_fixed_vector() -> None:
    """compute_signature matches the HMAC computed by openssl for an ASCII body."""
    assert compute_signature(TIMESTAMP, BODY, SECRET) == BODY_SIGNATURE


def test_compute_signature_fixed_vector_non_ascii() -> None:
    """compute_signature signs the raw UTF-8 bytes of a non-ASCII body."""
    assert compute_signature(TIMESTAMP, NON_ASCII_BODY, SECRET) == NON_ASCII_BODY_SIGNATURE


def test_compute_signature_matches_stripe_library() -> None:
    """compute_signature agrees with stripe's own _compute_signature on the same input."""
    text = NON_ASCII_BODY.decode()
    reference = stripe.WebhookSignature._compute_signature(f"{TIMESTAMP}.{text}", SECRET)
    assert compute_signature(TIMESTAMP, NON_ASCII_BODY, SECRET) == reference


def test_stripe_generated_header_verifies() -> None:
    """A header made by stripe's generate_signature_header parses and matches."""
    header = parse_signature_header(
        stripe.WebhookSignature.generate_signature_header(BODY.decode(), SECRET, timestamp=TIMESTAMP)
    )
    assert signature_matches(header, BODY, [SECRET])


def test_parse_header_reads_t_and_every_v1() -> None:
    """Every v1 element is kept in order and v0 is ignored."""
    header = parse_signature_header(f"t={TIMESTAMP},v1=aa,v0=bb,v1=cc")
    assert header == SignatureHeader(timestamp=TIMESTAMP, v1_signatures=("aa", "cc"))


def test_parse_header_tolerates_spaces_around_elements() -> None:
    """Spaces after the commas do not hide an element."""
    header = parse_signature_header(f"t={TIMESTAMP}, v1={BODY_SIGNATURE}")
    assert header.v1_signatures == (BODY_SIGNATURE,)


@pytest.mark.parametrize("value", [None, "", "   "])
def test_parse_header_missing(value: str | None) -> None:
    """An absent or blank header is missing_signature."""
    with pytest.raises(MissingSignature):
        parse_signature_header(value)


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        f"v1={BODY_SIGNATURE}",
        f"t=,v1={BODY_SIGNATURE}",
        f"t=abc,v1={BODY_SIGNATURE}",
        f"t=-5,v1={BODY_SIGNATURE}",
        f"t=1_700_000_000,v1={BODY_SIGNATURE}",
        f"t=1,t=2,v1={BODY_SIGNATURE}",
        f"t={TIMESTAMP}",
        f"t={TIMESTAMP},v1=",
        f"t={TIMESTAMP},v0={BODY_SIGNATURE}",
    ],
)
def test_parse_header_malformed(value: str) -> None:
    """A header without exactly one numeric t, or without a non-empty v1, is malformed_signature."""
    with pytest.raises(MalformedSignature):
        parse_signature_header(value)


def test_signature_matches_second_v1() -> None:
    """A header passes when its second v1 matches."""
    header = SignatureHeader(timestamp=TIMESTAMP, v1_signatures=("00" * 32, BODY_SIGNATURE))
    assert signature_matches(header, BODY, [SECRET])


def test_signature_matches_second_secret() -> None:
    """A header passes when it matches the older of two configured secrets."""
    header = SignatureHeader(timestamp=TIMESTAMP, v1_signatures=(BODY_SIGNATURE_OTHER_SECRET,))
    assert signature_matches(header, BODY, [SECRET, "whsec_other"])


def test_newest_matching_secret_is_first_position() -> None:
    """A match with the newest secret returns position 0."""
    header = SignatureHeader(timestamp=TIMESTAMP, v1_signatures=(BODY_SIGNATURE,))
    assert newest_matching_secret(header, BODY, [SECRET, "whsec_other"]) == 0


def test_newest_matching_secret_older_position() -> None:
    """A match with only the older secret returns its position."""
    header = SignatureHeader(timestamp=TIMESTAMP, v1_signatures=(BODY_SIGNATURE_OTHER_SECRET,))
    assert newest_matching_secret(header, BODY, [SECRET, "whsec_other"]) == 1


def test_newest_matching_secret_prefers_newest() -> None:
    """When v1 values match both secrets, the newest secret's position is returned."""
    header = SignatureHeader(timestamp=TIMESTAMP, v1_signatures=(BODY_SIGNATURE_OTHER_SECRET, BODY_SIGNATURE))
    assert newest_matching_secret(header, BODY, [SECRET, "whsec_other"]) == 0


def test_newest_matching_secret_none() -> None:
    """No match returns None."""
    header = SignatureHeader(timestamp=TIMESTAMP, v1_signatures=("00" * 32,))
    assert newest_matching_secret(header, BODY, [SECRET, "whsec_other"]) is None


def test_signature_wrong_secret_does_not_match() -> None:
    """A signature made with another secret does not match."""
    header = SignatureHeader(timestamp=TIMESTAMP, v1_signatures=(BODY_SIGNATURE_OTHER_SECRET,))
    assert not signature_matches(header, BODY, [SECRET])


def test_signature_other_timestamp_does_not_match() -> None:
    """The timestamp is part of the signed text."""
    header = SignatureHeader(timestamp=TIMESTAMP + 1, v1_signatures=(BODY_SIGNATURE,))
    assert not signature_matches(header, BODY, [SECRET])


def test_signature_reserialised_body_does_not_match() -> None:
    """The same JSON with other whitespace is other bytes and does not match."""
    header = SignatureHeader(timestamp=TIMESTAMP, v1_signatures=(BODY_SIGNATURE,))
    assert not signature_matches(header, b'{"id": "evt_1"}', [SECRET])


def test_signature_uppercase_hex_does_not_match() -> None:
    """Signatures are compared as Stripe writes them, in lower-case hex."""
    header = SignatureHeader(timestamp=TIMESTAMP, v1_signatures=(BODY_SIGNATURE.upper(),))
    assert not signature_matches(header, BODY, [SECRET])


def test_signature_non_ascii_candidate_does_not_raise() -> None:
    """A v1 value with non-ASCII characters is compared as bytes and simply fails."""
    header = SignatureHeader(timestamp=TIMESTAMP, v1_signatures=("é" * 64, "\ud800"))
    assert not signature_matches(header, BODY, [SECRET])


def test_check_timestamp_within_tolerance() -> None:
    """A timestamp exactly at the tolerance is accepted."""
    check_timestamp(SignatureHeader(TIMESTAMP, ("x",)), now=TIMESTAMP + 300, tolerance_seconds=300)


def test_check_timestamp_too_old() -> None:
    """A timestamp older than the tolerance is rejected."""
    with pytest.raises(TimestampOutsideTolerance):
        check_timestamp(SignatureHeader(TIMESTAMP, ("x",)), now=TIMESTAMP + 301, tolerance_seconds=300)


def test_check_timestamp_hour_in_future_accepted() -> None:
    """A timestamp an hour ahead is accepted, because only a timestamp older than the tolerance is rejected."""
    check_timestamp(SignatureHeader(TIMESTAMP, ("x",)), now=TIMESTAMP - 3600, tolerance_seconds=300)


def test_check_timestamp_slightly_in_future() -> None:
    """A small clock difference in the sender's favour is accepted."""
    check_timestamp(SignatureHeader(TIMESTAMP, ("x",)), now=TIMESTAMP - 30, tolerance_seconds=300)
