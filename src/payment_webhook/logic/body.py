"""The raw body bytes of a delivery, with the size limit applied before anything else.

The size is checked first (``check_body_size``), the body decoded later (``decode_body``),
so that a missing signature header is reported before a body that is not valid base64.
"""

from __future__ import annotations

import base64
import binascii

from payment_webhook.errors import InvalidEvent, PayloadTooLarge
from payment_webhook.models.request import WebhookRequest

MAX_BODY_BYTES = 1_048_576


def check_body_size(request: WebhookRequest, max_bytes: int = MAX_BODY_BYTES) -> None:
    """Raise when the decoded body would be larger than ``max_bytes``, without decoding it.

    Parameters
    ----------
    request:
        The delivery.
    max_bytes:
        Largest accepted size of the decoded body.

    Raises
    ------
    PayloadTooLarge
        The body is larger than ``max_bytes``. For a base64 body the size is computed from
        the encoded length, which is exact for every text that ``decode_body`` accepts.
    """
    if request.is_base64_encoded:
        encoded = request.body
        # Strict base64 has groups of 4 characters for 3 bytes, minus 1 byte per "=" of padding (at most 2).
        padding = min(len(encoded) - len(encoded.rstrip("=")), 2)
        decoded_size = (len(encoded) // 4) * 3 - padding
        if decoded_size > max_bytes:
            raise PayloadTooLarge(f"base64 body of {len(encoded)} characters decodes to more than {max_bytes} bytes")
        return

    # Each character is at least one UTF-8 byte, so a longer text cannot fit.
    if len(request.body) > max_bytes:
        raise PayloadTooLarge(f"body has more than {max_bytes} characters")
    if not request.body.isascii():
        size = len(request.body.encode("utf-8", "surrogatepass"))
        if size > max_bytes:
            raise PayloadTooLarge(f"body is {size} bytes, more than the limit of {max_bytes}")


def decode_body(request: WebhookRequest) -> bytes:
    """Return the body exactly as the sender signed it.

    A base64 body is decoded; a text body is encoded as UTF-8, which is how API Gateway
    received it. Nothing is parsed and nothing is serialised again. Call
    ``check_body_size`` first.

    Raises
    ------
    InvalidEvent
        ``isBase64Encoded`` is true but the body is not valid base64.
    """
    if request.is_base64_encoded:
        try:
            return base64.b64decode(request.body.encode("ascii"), validate=True)
        except (UnicodeEncodeError, binascii.Error):
            raise InvalidEvent("body is not valid base64, although isBase64Encoded is true") from None
    # surrogatepass: a lone surrogate cannot come from API Gateway, but the handler may be
    # invoked directly. The bytes then match no signature instead of raising here.
    return request.body.encode("utf-8", "surrogatepass")
