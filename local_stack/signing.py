"""Stripe-style webhook signatures for the sample events in ``events/``.

A signature header has the form ``t=<unix seconds>,v1=<hex>``, where the hex value is
HMAC-SHA256 of ``"<t>.<raw body bytes>"`` keyed with the whole ``whsec_...`` string, as
Stripe signs its webhooks. A body that API Gateway base64-encoded (``isBase64Encoded``)
is signed as its decoded bytes, because those are the bytes the provider sent.

``events/manifest.json`` lists every event file in replay order with the response the
function returns for it on an empty database, and the ``sign`` mode that
:func:`sign_event` applies:

- ``fresh``: signed now with the signing secret.
- ``stale``: signed with the signing secret, but the timestamp is a day older than the
  tolerance allows.
- ``wrong_secret``: signed now with a random secret that the function does not know.
- ``none``: no ``stripe-signature`` header.
- ``malformed``: a header that does not parse as ``t=<integer>,v1=<hex>``.
- ``keep``: the header stays as it is in the file.

``make sign-events`` (``scripts/sign_events.py``), the local stack's replay and the tests
all sign through this module.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any

SIGNATURE_HEADER = "stripe-signature"
DEFAULT_TOLERANCE_SECONDS = 300
# How far beyond the tolerance a ``stale`` timestamp lies: far enough that a slow run
# or a clock that is a few minutes off still gives timestamp_outside_tolerance.
STALE_MARGIN_SECONDS = 24 * 60 * 60
# The function rejects bodies larger than this many bytes with 413.
MAX_BODY_BYTES = 1024 * 1024

SIGN_MODES = ("fresh", "stale", "wrong_secret", "none", "malformed", "keep")
MANIFEST_NAME = "manifest.json"
ENV_VARS_NAME = "env.json"
# Files in events/ that are not events.
NON_EVENT_FILES = frozenset({MANIFEST_NAME, ENV_VARS_NAME})

# API Gateway writes requestContext.time as "04/Dec/2024:11:00:00 +0000", with English
# month abbreviations whatever the server's locale.
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


_HTTP_STATUS_CODES = frozenset(status.value for status in HTTPStatus)


class EventFileError(ValueError):
    """An event file or the manifest is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class ManifestEntry:
    """One event file in ``events/manifest.json`` and the response expected for it."""

    file: str
    description: str
    expect_status: int
    expect_body: dict[str, Any]
    sign: str
    generated: bool = False


@dataclass(frozen=True)
class SignedEvent:
    """An event file after :func:`resign_events` wrote it."""

    path: Path
    sign: str
    timestamp: int | None
    body_bytes: int


def compute_signature(payload: bytes, secret: str, timestamp: int) -> str:
    """Return the hex HMAC-SHA256 of ``"<timestamp>.<payload>"`` keyed with ``secret``."""
    signed = str(timestamp).encode("ascii") + b"." + payload
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """Build a ``stripe-signature`` header value for ``payload``.

    Parameters
    ----------
    payload:
        The raw body bytes, exactly as they are sent.
    secret:
        The signing secret (``whsec_...``), used whole as the HMAC key.
    timestamp:
        Unix seconds to sign with; defaults to now.

    Returns
    -------
    str
        ``t=<timestamp>,v1=<hex signature>``.
    """
    if timestamp is None:
        timestamp = int(time.time())
    return f"t={timestamp},v1={compute_signature(payload, secret, timestamp)}"


def body_bytes(event: dict[str, Any]) -> bytes:
    """Return the bytes the provider sent for an HTTP API 2.0 event, decoding base64 bodies.

    Raises
    ------
    EventFileError
        If the event has no string body, or its base64 body does not decode.
    """
    body = event.get("body")
    if not isinstance(body, str):
        raise EventFileError(f"event body must be a string, got {type(body).__name__}")
    if not event.get("isBase64Encoded"):
        return body.encode("utf-8")
    try:
        return base64.b64decode(body, validate=True)
    except ValueError as exc:
        raise EventFileError(f"event has isBase64Encoded true but its body is not valid base64: {exc}") from exc


def format_request_time(epoch_seconds: int) -> str:
    """Format a time as API Gateway writes ``requestContext.time`` (``04/Dec/2024:11:00:00 +0000``)."""
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return f"{moment.day:02d}/{_MONTHS[moment.month - 1]}/{moment.year}:{moment:%H:%M:%S} +0000"


def sign_event(
    event: dict[str, Any],
    mode: str,
    secret: str,
    *,
    now: int | None = None,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> dict[str, Any]:
    """Return a copy of ``event`` signed per ``mode``, with the request time set to ``now``.

    Only the ``stripe-signature`` header and ``requestContext.time``/``timeEpoch`` change;
    the body is never touched.

    Parameters
    ----------
    event:
        An API Gateway HTTP API payload 2.0 event.
    mode:
        One of :data:`SIGN_MODES` (see the module docstring).
    secret:
        The signing secret the function checks against.
    now:
        Unix seconds of the request; defaults to the current time.
    tolerance_seconds:
        The function's signature tolerance; a ``stale`` timestamp is older than this.

    Returns
    -------
    dict
        The signed copy.

    Raises
    ------
    EventFileError
        If ``mode`` is unknown or the body cannot be read.
    """
    if mode not in SIGN_MODES:
        raise EventFileError(f"sign mode '{mode}' is unknown: use one of {', '.join(SIGN_MODES)}")
    if now is None:
        now = int(time.time())
    signed = copy.deepcopy(event)
    headers: dict[str, str] = signed.setdefault("headers", {})
    payload = body_bytes(signed)

    if mode == "fresh":
        headers[SIGNATURE_HEADER] = signature_header(payload, secret, now)
    elif mode == "stale":
        stale_timestamp = now - tolerance_seconds - STALE_MARGIN_SECONDS
        headers[SIGNATURE_HEADER] = signature_header(payload, secret, stale_timestamp)
    elif mode == "wrong_secret":
        headers[SIGNATURE_HEADER] = signature_header(payload, "whsec_" + secrets.token_hex(24), now)
    elif mode == "none":
        headers.pop(SIGNATURE_HEADER, None)
    elif mode == "malformed":
        # A real signature, but the timestamp is not an integer: the header cannot be parsed.
        headers[SIGNATURE_HEADER] = f"t=not-a-timestamp,v1={compute_signature(payload, secret, now)}"

    context = signed.setdefault("requestContext", {})
    context["time"] = format_request_time(now)
    context["timeEpoch"] = now * 1000
    return signed


def signature_timestamp(event: dict[str, Any]) -> int | None:
    """Return the ``t=`` value of an event's signature header, or None when there is none."""
    header = event.get("headers", {}).get(SIGNATURE_HEADER)
    if not header:
        return None
    for item in header.split(","):
        key, _, value = item.partition("=")
        if key.strip() == "t" and value.strip().isdigit():
            return int(value)
    return None


def load_manifest(events_dir: Path) -> list[ManifestEntry]:
    """Read ``events_dir/manifest.json`` and check every entry's fields.

    Raises
    ------
    EventFileError
        If the manifest is missing, not a JSON list, or an entry lacks a field or has an
        unknown sign mode.
    """
    path = events_dir / MANIFEST_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise EventFileError(f"manifest {path} not found: pass --events-dir with the folder of the event files") from exc
    except json.JSONDecodeError as exc:
        raise EventFileError(f"manifest {path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, list):
        raise EventFileError(f"manifest {path} must be a JSON list of entries")

    entries = []
    for index, item in enumerate(raw):
        where = f"manifest {path} entry {index}"
        missing = [name for name in ("file", "description", "expect_status", "expect_body", "sign") if name not in item]
        if missing:
            raise EventFileError(f"{where} is missing {', '.join(missing)}")
        if item["sign"] not in SIGN_MODES:
            raise EventFileError(f"{where} has sign mode '{item['sign']}': use one of {', '.join(SIGN_MODES)}")
        if item.get("generated") and item["file"] not in GENERATED_EVENTS:
            raise EventFileError(f"{where} is marked generated, but no generator exists for {item['file']}")
        if item["expect_status"] not in _HTTP_STATUS_CODES:
            raise EventFileError(f"{where} has expect_status {item['expect_status']!r}, which is not an HTTP status code")
        entries.append(
            ManifestEntry(
                file=item["file"],
                description=item["description"],
                expect_status=item["expect_status"],
                expect_body=item["expect_body"],
                sign=item["sign"],
                generated=bool(item.get("generated", False)),
            )
        )
    return entries


def read_event(path: Path) -> dict[str, Any]:
    """Read one event file.

    Raises
    ------
    EventFileError
        If the file is missing or is not a JSON object.
    """
    try:
        event = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise EventFileError(f"event file {path} not found") from exc
    except json.JSONDecodeError as exc:
        raise EventFileError(f"event file {path} is not valid JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise EventFileError(f"event file {path} must contain a JSON object")
    return event


def load_event(events_dir: Path, entry: ManifestEntry) -> dict[str, Any]:
    """Return the event for a manifest entry; a generated one is built in memory when its file is absent."""
    path = events_dir / entry.file
    if entry.generated and not path.exists():
        return GENERATED_EVENTS[entry.file]()
    return read_event(path)


def write_event(path: Path, event: dict[str, Any]) -> None:
    """Write an event file in the layout the committed files use (2-space indent, final newline)."""
    path.write_text(json.dumps(event, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def resign_events(
    events_dir: Path,
    secret: str,
    *,
    now: int | None = None,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> list[SignedEvent]:
    """Re-sign every event file in the manifest per its ``sign`` mode and write it back.

    Generated files (the oversized body) are written from their generator, so a fresh
    clone gets them on the first run.

    Parameters
    ----------
    events_dir:
        Folder holding ``manifest.json`` and the event files.
    secret:
        The signing secret the function checks against.
    now:
        Unix seconds to sign with; defaults to the current time.
    tolerance_seconds:
        The function's signature tolerance, used for ``stale`` timestamps.

    Returns
    -------
    list[SignedEvent]
        One entry per file, in manifest order.

    Raises
    ------
    EventFileError
        If the manifest or an event file is invalid.
    """
    if now is None:
        now = int(time.time())
    results = []
    for entry in load_manifest(events_dir):
        event = load_event(events_dir, entry)
        signed = sign_event(event, entry.sign, secret, now=now, tolerance_seconds=tolerance_seconds)
        path = events_dir / entry.file
        write_event(path, signed)
        results.append(SignedEvent(path, entry.sign, signature_timestamp(signed), len(body_bytes(signed))))
    return results


def http_api_event(
    body: str,
    *,
    request_id: str,
    is_base64_encoded: bool = False,
    content_type: str = "application/json; charset=utf-8",
    now: int = 1733310000,
) -> dict[str, Any]:
    """Build an unsigned API Gateway HTTP API payload 2.0 event for ``POST /webhooks/payments``.

    The headers and source address are modelled on a webhook request from Stripe.

    Parameters
    ----------
    body:
        The body as API Gateway passes it (base64 text when ``is_base64_encoded``).
    request_id:
        ``requestContext.requestId``; also the source of the ``x-amzn-trace-id`` value.
    is_base64_encoded:
        Whether API Gateway base64-encoded the body.
    content_type:
        The ``content-type`` header.
    now:
        Unix seconds of the request.

    Returns
    -------
    dict
        The event, with no ``stripe-signature`` header.
    """
    return {
        "version": "2.0",
        "routeKey": "POST /webhooks/payments",
        "rawPath": "/webhooks/payments",
        "rawQueryString": "",
        "headers": {
            "accept": "*/*; q=0.5, application/xml",
            "cache-control": "no-cache",
            "content-length": str(len(base64.b64decode(body)) if is_base64_encoded else len(body.encode("utf-8"))),
            "content-type": content_type,
            "host": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
            "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            "x-amzn-trace-id": "Root=1-" + hashlib.sha256(request_id.encode()).hexdigest()[:32],
            "x-forwarded-for": "3.18.12.63",
            "x-forwarded-port": "443",
            "x-forwarded-proto": "https",
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "a1b2c3d4e5",
            "domainName": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "a1b2c3d4e5",
            "http": {
                "method": "POST",
                "path": "/webhooks/payments",
                "protocol": "HTTP/1.1",
                "sourceIp": "3.18.12.63",
                "userAgent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
            },
            "requestId": request_id,
            "routeKey": "POST /webhooks/payments",
            "stage": "$default",
            "time": format_request_time(now),
            "timeEpoch": now * 1000,
        },
        "body": body,
        "isBase64Encoded": is_base64_encoded,
    }


def build_oversized_event() -> dict[str, Any]:
    """Build the ``payload_too_large.json`` event: a valid payment event one byte over the body limit.

    The body is the same bytes on every call, so re-signing never changes it.
    """
    padding_key = "padding"
    event_body: dict[str, Any] = {
        "id": "evt_1SampleOversized0000001",
        "object": "event",
        "api_version": "2024-06-20",
        "created": 1733310500,
        "data": {
            "object": {
                "id": "pi_3SampleOversized000001",
                "object": "payment_intent",
                "amount": 1200,
                "currency": "eur",
                "livemode": False,
                "metadata": {padding_key: ""},
                "status": "requires_payment_method",
            }
        },
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "payment_intent.created",
    }
    unpadded = json.dumps(event_body, indent=2).encode("utf-8")
    event_body["data"]["object"]["metadata"][padding_key] = "x" * (MAX_BODY_BYTES + 1 - len(unpadded))
    body = json.dumps(event_body, indent=2)
    return http_api_event(body, request_id="PtlSampleReq0001=")


# Event files that are built by code instead of committed, by file name.
GENERATED_EVENTS = {"payload_too_large.json": build_oversized_event}
