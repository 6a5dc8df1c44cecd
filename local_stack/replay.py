"""Replay the sample events in ``events/`` over HTTP and compare each response with the expected one.

``events/manifest.json`` lists the event files in replay order with the expected status,
the expected body fields and a ``sign`` mode; :mod:`local_stack.signing` reads it and
signs each event with the stack's signing secret and the current time. Each signed event
becomes the HTTP request that API Gateway received, and goes to the local gateway.

A response matches when its status equals ``expect_status`` and every key of
``expect_body`` has the same value in the JSON body. Files go in manifest order, so a
later entry can expect ``duplicate`` for an event an earlier one stored. An event file
the manifest does not list is sent freshly signed and always shows as a mismatch, so the
manifest stays complete.
"""

from __future__ import annotations

import http.client
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from local_stack.signing import (
    DEFAULT_TOLERANCE_SECONDS,
    NON_EVENT_FILES,
    EventFileError,
    ManifestEntry,
    body_bytes,
    load_event,
    load_manifest,
    sign_event,
)

REQUEST_TIMEOUT_SECONDS = 30
# Headers that API Gateway added or that belonged to the original connection; the HTTP
# client and the local gateway set their own.
NOT_REPLAYED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "connection",
        "transfer-encoding",
        "x-forwarded-for",
        "x-forwarded-port",
        "x-forwarded-proto",
        "x-amzn-trace-id",
    }
)


@dataclass(frozen=True)
class ReplayRow:
    """One line of the replay table."""

    file: str
    sign: str
    expected: str
    actual: str
    matches: bool


@dataclass(frozen=True)
class ReplayRequest:
    """The HTTP request that API Gateway turned into an event."""

    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes


def request_from_event(event: dict[str, Any]) -> ReplayRequest:
    """Rebuild the client's HTTP request from an HTTP API 2.0 event.

    Raises
    ------
    EventFileError
        The event's body is not a string or its base64 body does not decode.
    """
    http = event.get("requestContext", {}).get("http", {})
    method = str(http.get("method", "POST"))
    target = str(event.get("rawPath") or http.get("path") or "/")
    if event.get("rawQueryString"):
        target += "?" + str(event["rawQueryString"])
    body = body_bytes(event) if event.get("body") is not None else b""
    headers = [
        (str(name), str(value))
        for name, value in (event.get("headers") or {}).items()
        if str(name).lower() not in NOT_REPLAYED_HEADERS
    ]
    if event.get("cookies"):
        headers.append(("cookie", "; ".join(str(cookie) for cookie in event["cookies"])))
    return ReplayRequest(method=method, target=target, headers=headers, body=body)


def send(base_url: str, request: ReplayRequest) -> tuple[int, bytes]:
    """Send ``request`` to the server at ``base_url``; return the status and body."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(
        parts.hostname or "127.0.0.1", parts.port or 80, timeout=REQUEST_TIMEOUT_SECONDS
    )
    try:
        connection.putrequest(request.method, request.target, skip_accept_encoding=True)
        for name, value in request.headers:
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(request.body)))
        connection.endheaders(request.body)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def summarize(status: int, body: dict[str, Any] | None) -> str:
    """Return ``<status> <status, error or message field>``, the short form the table shows."""
    if not body:
        return str(status)
    for key in ("status", "error", "message"):
        if key in body:
            return f"{status} {body[key]}"
    return f"{status} {json.dumps(body, sort_keys=True)}"


def replay_events(
    events_dir: Path,
    base_url: str,
    signing_secret: str,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> list[ReplayRow]:
    """Send every event the manifest lists, in its order, then every event file it omits.

    Parameters
    ----------
    events_dir:
        Folder with the event files and manifest.json.
    base_url:
        The gateway, e.g. ``http://127.0.0.1:3000``; each event's rawPath is appended.
    signing_secret:
        The stack's current signing secret (``whsec_...``).
    tolerance_seconds:
        The function's signature tolerance; ``stale`` signatures are older than it.

    Returns
    -------
    list[ReplayRow]
        One row per event file.

    Raises
    ------
    EventFileError
        The manifest is missing or invalid.
    """
    entries = load_manifest(events_dir)
    rows = [_replay_entry(events_dir, base_url, signing_secret, tolerance_seconds, entry) for entry in entries]
    listed = {entry.file for entry in entries}
    for path in sorted(events_dir.glob("*.json")):
        if path.name in listed or path.name in NON_EVENT_FILES:
            continue
        unlisted = ManifestEntry(
            file=path.name, description="", expect_status=0, expect_body={}, sign="fresh", generated=False
        )
        row = _replay_entry(events_dir, base_url, signing_secret, tolerance_seconds, unlisted)
        rows.append(ReplayRow(path.name, "fresh", "(not in manifest)", row.actual, matches=False))
    return rows


def _replay_entry(
    events_dir: Path,
    base_url: str,
    signing_secret: str,
    tolerance_seconds: int,
    entry: ManifestEntry,
) -> ReplayRow:
    expected = summarize(entry.expect_status, entry.expect_body)
    try:
        event = load_event(events_dir, entry)
        now = int(time.time())
        signed = sign_event(event, entry.sign, signing_secret, now=now, tolerance_seconds=tolerance_seconds)
        request = request_from_event(signed)
    except EventFileError as exc:
        return ReplayRow(entry.file, entry.sign, expected, f"(not sent: {exc})", matches=False)
    try:
        status, raw_body = send(base_url, request)
    except OSError as exc:
        return ReplayRow(entry.file, entry.sign, expected, f"(request failed: {exc})", matches=False)
    body = _json_object(raw_body)
    fields_match = all(body is not None and body.get(key) == value for key, value in entry.expect_body.items())
    matches = status == entry.expect_status and fields_match
    if body is None and raw_body:
        actual = f"{status} (body is not a JSON object)"
    else:
        actual = summarize(status, body)
    return ReplayRow(entry.file, entry.sign, expected, actual, matches)


def _json_object(raw_body: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw_body) if raw_body else None
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def format_table(rows: list[ReplayRow]) -> list[str]:
    """Return the replay table as text lines, with MISMATCH in the result column of every row that differs."""
    header = ("event", "signature", "expected", "actual", "result")
    cells = [(row.file, row.sign, row.expected, row.actual, "ok" if row.matches else "MISMATCH") for row in rows]
    widths = [max(len(line[column]) for line in [header, *cells]) for column in range(len(header))]
    return [
        "  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True)).rstrip()
        for line in [header, *cells]
    ]
