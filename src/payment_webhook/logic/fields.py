"""Field readers for parsed JSON objects; each error names the field's full path."""

from __future__ import annotations

from typing import Any

from payment_webhook.errors import InvalidEvent

MAX_ID_CHARS = 255
BIGINT_MAX = 2**63 - 1

_MISSING = object()


def require_string(
    container: dict[str, Any], key: str, path: str, *, max_chars: int = MAX_ID_CHARS, event_id: str | None = None
) -> str:
    """Return ``container[key]`` when it is a string of 1 to ``max_chars`` characters.

    Raises
    ------
    InvalidEvent
        The field is missing, not a string, empty or too long; the message names ``path``.
    """
    value = container.get(key, _MISSING)
    if value is _MISSING:
        raise InvalidEvent(f"{path} is missing", event_id=event_id)
    if not isinstance(value, str):
        raise InvalidEvent(f"{path} must be a string", event_id=event_id)
    if not 1 <= len(value) <= max_chars:
        raise InvalidEvent(f"{path} must be 1 to {max_chars} characters long", event_id=event_id)
    return value


def optional_string(
    container: dict[str, Any], key: str, path: str, *, max_chars: int = MAX_ID_CHARS, event_id: str | None = None
) -> str | None:
    """Return ``container[key]`` as a string of 1 to ``max_chars`` characters, or None when absent or null.

    Raises
    ------
    InvalidEvent
        The field is present but not a string of the allowed length.
    """
    if container.get(key) is None:
        return None
    return require_string(container, key, path, max_chars=max_chars, event_id=event_id)


def require_integer(
    container: dict[str, Any], key: str, path: str, *, minimum: int, maximum: int, event_id: str | None = None
) -> int:
    """Return ``container[key]`` when it is a JSON integer in ``[minimum, maximum]``.

    ``true`` and ``false`` are not integers here, although Python's bool is an int.

    Raises
    ------
    InvalidEvent
        The field is missing, not an integer, or out of range; the message names ``path``.
    """
    value = container.get(key, _MISSING)
    if value is _MISSING:
        raise InvalidEvent(f"{path} is missing", event_id=event_id)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidEvent(f"{path} must be an integer", event_id=event_id)
    if not minimum <= value <= maximum:
        raise InvalidEvent(f"{path} must be between {minimum} and {maximum}", event_id=event_id)
    return value


def require_object(container: dict[str, Any], key: str, path: str, *, event_id: str | None = None) -> dict[str, Any]:
    """Return ``container[key]`` when it is a JSON object.

    Raises
    ------
    InvalidEvent
        The field is missing or not an object; the message names ``path``.
    """
    value = container.get(key, _MISSING)
    if value is _MISSING:
        raise InvalidEvent(f"{path} is missing", event_id=event_id)
    if not isinstance(value, dict):
        raise InvalidEvent(f"{path} must be an object", event_id=event_id)
    return value
