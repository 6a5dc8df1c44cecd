"""Parse the verified body into a typed ``WebhookEvent``; every error names the field."""

from __future__ import annotations

from payment_webhook.errors import InvalidEvent
from payment_webhook.logic.fields import MAX_ID_CHARS, require_integer, require_object, require_string
from payment_webhook.logic.jsonb import parse_storable_json
from payment_webhook.logic.payments import payment_update_for
from payment_webhook.models.event import WebhookEvent

MAX_TYPE_CHARS = 255
# 9999-12-31T23:59:59Z, the last second that PostgreSQL's and Python's calendars share.
MAX_CREATED = 253_402_300_799


def parse_event(raw_body: bytes) -> WebhookEvent:
    """Parse and validate a verified body.

    A valid event has a string ``id`` of 1 to 255 characters, a non-empty string ``type``
    of at most 255 characters, an integer ``created`` from 0 to ``MAX_CREATED``, an
    optional boolean ``livemode`` and an object ``data.object``. The fields that the
    payment update needs never make an event invalid: ``logic.payments`` skips an update
    it cannot build. Unknown event types are valid.

    Parameters
    ----------
    raw_body:
        The body whose signature was verified.

    Returns
    -------
    WebhookEvent
        The event, with the decoded body kept as ``payload_text`` for storage and the
        payment update it implies, if any.

    Raises
    ------
    InvalidEvent
        The body is not UTF-8 JSON that jsonb can store, or a field is missing or invalid.
    """
    try:
        text = raw_body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent(f"body is not valid UTF-8 (byte {exc.start})") from None

    document = parse_storable_json(text)
    if not isinstance(document, dict):
        raise InvalidEvent("body must be a JSON object")

    event_id = require_string(document, "id", "id", max_chars=MAX_ID_CHARS)
    event_type = require_string(document, "type", "type", max_chars=MAX_TYPE_CHARS, event_id=event_id)
    created = require_integer(document, "created", "created", minimum=0, maximum=MAX_CREATED, event_id=event_id)
    livemode = document.get("livemode")
    if "livemode" in document and not isinstance(livemode, bool):
        raise InvalidEvent("livemode must be true or false", event_id=event_id)
    data = require_object(document, "data", "data", event_id=event_id)
    data_object = require_object(data, "object", "data.object", event_id=event_id)

    return WebhookEvent(
        event_id=event_id,
        event_type=event_type,
        created=created,
        livemode=livemode,
        payload_text=text,
        payment_update=payment_update_for(event_type, data_object),
    )
