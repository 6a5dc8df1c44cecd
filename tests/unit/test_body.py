"""Size limit and base64 decoding of the raw body."""

from __future__ import annotations

import base64

import pytest

from payment_webhook.errors import InvalidEvent, PayloadTooLarge
from payment_webhook.logic.body import MAX_BODY_BYTES, check_body_size, decode_body
from payment_webhook.models.request import WebhookRequest


def request(body: str, *, is_base64_encoded: bool = False) -> WebhookRequest:
    return WebhookRequest(headers={}, body=body, is_base64_encoded=is_base64_encoded)


def test_text_body_encoded_as_utf8() -> None:
    """A text body becomes its UTF-8 bytes."""
    assert decode_body(request('{"note": "€"}')) == '{"note": "€"}'.encode()


def test_base64_body_decoded() -> None:
    """A base64 body is decoded to the bytes that were signed."""
    raw = '{"note": "é"}'.encode()
    assert decode_body(request(base64.b64encode(raw).decode(), is_base64_encoded=True)) == raw


def test_body_at_limit_accepted() -> None:
    """A body of exactly 1 MiB passes the size check."""
    check_body_size(request("a" * MAX_BODY_BYTES))


def test_body_over_limit_rejected() -> None:
    """A body one byte over 1 MiB is rejected."""
    with pytest.raises(PayloadTooLarge):
        check_body_size(request("a" * (MAX_BODY_BYTES + 1)))


def test_multibyte_body_over_limit_rejected() -> None:
    """The limit counts UTF-8 bytes, not characters."""
    with pytest.raises(PayloadTooLarge):
        check_body_size(request("€" * (MAX_BODY_BYTES // 3 + 1)))


def test_multibyte_body_at_limit_accepted() -> None:
    """A non-ASCII body of exactly 1 MiB of UTF-8 passes the size check."""
    check_body_size(request("€" * (MAX_BODY_BYTES // 3) + "a" * (MAX_BODY_BYTES % 3)))


def test_base64_body_at_limit_accepted() -> None:
    """A base64 body that decodes to exactly 1 MiB passes the size check."""
    encoded = base64.b64encode(b"a" * MAX_BODY_BYTES).decode()
    check_body_size(request(encoded, is_base64_encoded=True))


@pytest.mark.parametrize("extra_bytes", [1, 2, 3])
def test_base64_body_over_limit_rejected(extra_bytes: int) -> None:
    """A base64 body that decodes to 1 to 3 bytes over 1 MiB is rejected from its encoded length."""
    encoded = base64.b64encode(b"a" * (MAX_BODY_BYTES + extra_bytes)).decode()
    with pytest.raises(PayloadTooLarge):
        check_body_size(request(encoded, is_base64_encoded=True))


def test_huge_base64_body_rejected_before_decoding() -> None:
    """An encoded length that cannot fit is rejected even though the text is not valid base64."""
    with pytest.raises(PayloadTooLarge):
        check_body_size(request("!" * (2 * MAX_BODY_BYTES), is_base64_encoded=True))


def test_invalid_base64_passes_size_check() -> None:
    """A short text that is not base64 passes the size check; decoding reports it later."""
    check_body_size(request("!!!!", is_base64_encoded=True))


@pytest.mark.parametrize("encoded", ["not base64!", "abc", "YWJj\n", "é"])
def test_invalid_base64_rejected(encoded: str) -> None:
    """Text that is not strict base64 is invalid_event with a message saying so."""
    with pytest.raises(InvalidEvent, match="not valid base64"):
        decode_body(request(encoded, is_base64_encoded=True))


def test_lone_surrogate_in_text_body_does_not_raise() -> None:
    """A text body with a lone surrogate (only possible on direct invocation) yields bytes."""
    assert decode_body(request("\ud800")) == b"\xed\xa0\x80"
