"""The delivery pipeline: size, then signature, then event, then storage.

The first check that fails decides the response, and nothing in a body is parsed before its
signature is verified. In detail: the size (from the encoded length of a base64 body), the
signature header, the base64 decoding, the signature match, the timestamp, the event. The
handler turns the returned result, or the raised rejection, into the HTTP response.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

from payment_webhook.deadline import Deadline
from payment_webhook.errors import InvalidSignature
from payment_webhook.logic.body import MAX_BODY_BYTES, check_body_size, decode_body
from payment_webhook.logic.events import parse_event
from payment_webhook.logic.signature import (
    SIGNATURE_HEADER,
    check_timestamp,
    newest_matching_secret,
    parse_signature_header,
)
from payment_webhook.models.event import WebhookEvent
from payment_webhook.models.outcome import DeliveryResult, StoreResult
from payment_webhook.models.request import WebhookRequest


class SigningSecretSource(Protocol):
    """Source of the signing secrets (``dal.secrets.SigningSecretCache``)."""

    def get(self, deadline: Deadline) -> Sequence[str]:
        """Return the current secrets, newest first."""
        ...

    def refresh_after_mismatch(self, deadline: Deadline) -> Sequence[str] | None:
        """Read the secrets again unless that was done recently; None when skipped."""
        ...

    def refresh_after_older_match(self, deadline: Deadline) -> Sequence[str] | None:
        """Read the secrets again unless that was done recently; None when skipped or failed."""
        ...


class EventSink(Protocol):
    """Storage for verified events (``dal.events.EventStore``)."""

    def store(self, event: WebhookEvent, deadline: Deadline) -> StoreResult:
        """Store the event and its payment update in one transaction."""
        ...


def deliver(
    request: WebhookRequest,
    *,
    signing_secrets: SigningSecretSource,
    store: EventSink,
    tolerance_seconds: int,
    deadline: Deadline,
    on_event_parsed: Callable[[WebhookEvent], None] | None = None,
    clock: Callable[[], float] = time.time,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> DeliveryResult:
    """Verify, validate and store one delivery.

    Parameters
    ----------
    request:
        The delivery as the handler adapted it.
    signing_secrets:
        Source of the signing secrets. When no secret matches, it is asked once to read
        the secrets again, so a rotation takes effect without a new process. When only an
        older secret matches, it is asked the same, so a removed secret stops passing.
    store:
        Storage for the event.
    tolerance_seconds:
        Largest accepted age of the signed timestamp at ``clock()``.
    deadline:
        End of the time available for network calls.
    on_event_parsed:
        Called with the event as soon as it is valid, so the caller can tag its logs.
    clock:
        Current Unix time in seconds.
    max_body_bytes:
        Size limit of the decoded body.

    Returns
    -------
    DeliveryResult
        The event and whether it was stored or already there.

    Raises
    ------
    WebhookRejection
        A check failed; the subclass carries the error code and HTTP status.
    StorageUnavailable
        Secrets Manager or the database could not be used; nothing was written.
    """
    check_body_size(request, max_body_bytes)
    header = parse_signature_header(request.header(SIGNATURE_HEADER))
    raw_body = decode_body(request)

    matched_position = newest_matching_secret(header, raw_body, signing_secrets.get(deadline))
    if matched_position is None:
        refreshed = signing_secrets.refresh_after_mismatch(deadline)
    elif matched_position > 0:
        # Only an older secret matched, and the operator may have removed it since the last read.
        refreshed = signing_secrets.refresh_after_older_match(deadline)
    else:
        refreshed = None
    if refreshed is not None:
        matched_position = newest_matching_secret(header, raw_body, refreshed)
    if matched_position is None:
        raise InvalidSignature("no v1 signature matches a configured signing secret")
    check_timestamp(header, clock(), tolerance_seconds)

    event = parse_event(raw_body)
    if on_event_parsed is not None:
        on_event_parsed(event)

    store_result = store.store(event, deadline)
    return DeliveryResult(event=event, store_result=store_result)
