"""Stripe webhook signature verification.

The ``Stripe-Signature`` header is a comma-separated list of ``key=value`` elements: one
``t`` (Unix seconds) and one or more ``v1`` (hex HMAC-SHA256). Each ``v1`` is the HMAC of
``"<t>.<raw body bytes>"`` keyed by the UTF-8 bytes of a signing secret, the whole
``whsec_...`` string included. Other schemes (``v0``) are ignored, as Stripe's libraries do.

Mapping of header problems to error codes:

- header absent, empty or only whitespace: ``missing_signature``;
- header present but without exactly one ``t`` of decimal digits, or without any
  non-empty ``v1``: ``malformed_signature`` (so a header with only ``v0`` is malformed);
- no ``v1`` matches any secret: ``invalid_signature``;
- a match, but ``t`` is older than the tolerance: ``timestamp_outside_tolerance``.

A ``t`` in the future is accepted, as the webhook contract only rejects a ``t`` older than
the tolerance and Stripe's libraries check only the age. A sender whose clock runs fast
would otherwise fail on every retry. The cost: a request signed with a future ``t`` can be
replayed until that ``t`` is older than the tolerance, which only someone holding the
secret can arrange.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

from payment_webhook.errors import MalformedSignature, MissingSignature, TimestampOutsideTolerance
from payment_webhook.models.signature import SignatureHeader

SIGNATURE_HEADER = "Stripe-Signature"
SIGNATURE_SCHEME = "v1"
# Twelve digits reach the year 33658, enough for any clock and small enough for int().
_TIMESTAMP_PATTERN = re.compile(r"[0-9]{1,12}")


def parse_signature_header(value: str | None) -> SignatureHeader:
    """Parse a Stripe-Signature header into its timestamp and ``v1`` signatures.

    Parameters
    ----------
    value:
        The header's value, or None when the request has no such header.

    Returns
    -------
    SignatureHeader
        The ``t`` value and every non-empty ``v1`` value, in header order.

    Raises
    ------
    MissingSignature
        The header is absent or blank.
    MalformedSignature
        The header has no ``t``, several ``t``, a ``t`` that is not decimal digits, or no ``v1``.
    """
    if value is None or not value.strip():
        raise MissingSignature("Stripe-Signature header is missing")

    timestamps: list[str] = []
    signatures: list[str] = []
    for element in value.split(","):
        key, separator, element_value = element.strip().partition("=")
        if not separator:
            continue
        if key == "t":
            timestamps.append(element_value.strip())
        elif key == SIGNATURE_SCHEME and element_value.strip():
            signatures.append(element_value.strip())

    if len(timestamps) != 1:
        raise MalformedSignature(f"Stripe-Signature header has {len(timestamps)} 't' elements, expected 1")
    if not _TIMESTAMP_PATTERN.fullmatch(timestamps[0]):
        raise MalformedSignature("Stripe-Signature header 't' is not a Unix time in decimal digits")
    if not signatures:
        raise MalformedSignature("Stripe-Signature header has no 'v1' signature")
    return SignatureHeader(timestamp=int(timestamps[0]), v1_signatures=tuple(signatures))


def compute_signature(timestamp: int, body: bytes, secret: str) -> str:
    """Return the hex ``v1`` signature of ``body`` signed at ``timestamp`` with ``secret``."""
    signed_payload = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed_payload, hashlib.sha256).hexdigest()


def signature_matches(header: SignatureHeader, body: bytes, secrets: Sequence[str]) -> bool:
    """Return whether any ``v1`` of ``header`` matches the signature under any secret."""
    return newest_matching_secret(header, body, secrets) is not None


def newest_matching_secret(header: SignatureHeader, body: bytes, secrets: Sequence[str]) -> int | None:
    """Return the position in ``secrets`` (newest first) of the first secret that any ``v1`` matches.

    Every pair is compared with ``hmac.compare_digest``, and the loop does not stop at the
    first match, so the time taken does not reveal which pair matched.

    Returns
    -------
    int | None
        0 when the newest secret matches, a larger position when only an older one does,
        None when no secret matches.
    """
    candidates = [
        # A header value may hold any character; compare_digest needs bytes for non-ASCII.
        signature.encode("utf-8", "backslashreplace")
        for signature in header.v1_signatures
    ]
    newest_match: int | None = None
    for position, secret in enumerate(secrets):
        expected = compute_signature(header.timestamp, body, secret).encode("ascii")
        for candidate in candidates:
            if hmac.compare_digest(expected, candidate) and newest_match is None:
                newest_match = position
    return newest_match


def check_timestamp(header: SignatureHeader, now: float, tolerance_seconds: int) -> None:
    """Raise when the header's ``t`` is more than ``tolerance_seconds`` before ``now``; a future ``t`` passes.

    Raises
    ------
    TimestampOutsideTolerance
        ``t`` is older than the tolerance.
    """
    age_seconds = now - header.timestamp
    if age_seconds > tolerance_seconds:
        raise TimestampOutsideTolerance(
            f"signature timestamp is {int(age_seconds)} s old, more than the tolerance of {tolerance_seconds} s"
        )
