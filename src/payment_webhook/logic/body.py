"""The raw body bytes of a delivery, with the size limit applied before anything else."""

from __future__ import annotations

import base64
import binascii

from payment_webhook.errors import InvalidEvent, PayloadTooLarge
from payment_webhook.models.request import WebhookRequest

MAX_BODY_BYTES = 1_048_576


def read_raw_body(request: WebhookRequest, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    """Return the body exactly as the sender signed it.

    A base64 body is decoded first; a text body is encoded as UTF-8, which is how API
    Gateway received it. Nothing is parsed and nothing is serialised again.

    Parameters
    ----------
    request:
        The delivery.
    max_bytes:
        Largest accepted size of the decoded body.

    Returns
    -------
    bytes
        The raw body.

    Raises
    ------
    PayloadTooLarge
        The body is larger than ``max_bytes``; for a base64 body this is decided from the
        encoded length before decoding whenever the length alone proves it.
    InvalidEvent
        ``isBase64Encoded`` is true but the body is not valid base64.
    """
    if request.is_base64_encoded:
        return _decode_base64_body(request.body, max_bytes)

    # Each character is at least one UTF-8 byte, so a longer text cannot fit.
    if len(request.body) > max_bytes:
        raise PayloadTooLarge(f"body has more than {max_bytes} characters")
    # surrogatepass: a lone surrogate cannot come from API Gateway, but the handler may be
    # invoked directly. The bytes then match no signature instead of raising here.
    raw = request.body.encode("utf-8", "surrogatepass")
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"body is {len(raw)} bytes, more than the limit of {max_bytes}")
    return raw


def _decode_base64_body(encoded: str, max_bytes: int) -> bytes:
    # 4 base64 characters carry 3 bytes, and padding removes at most 2 from the last group.
    smallest_decoded_size = (len(encoded) // 4) * 3 - 2
    if smallest_decoded_size > max_bytes:
        raise PayloadTooLarge(f"base64 body of {len(encoded)} characters decodes to more than {max_bytes} bytes")
    try:
        raw = base64.b64decode(encoded.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        raise InvalidEvent("body is not valid base64, although isBase64Encoded is true") from None
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"body is {len(raw)} bytes, more than the limit of {max_bytes}")
    return raw
