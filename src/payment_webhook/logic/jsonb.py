"""JSON parsing that rejects what PostgreSQL's jsonb cannot store, naming the field.

PostgreSQL 16 rejects in jsonb: the escape ``\\u0000`` (NUL), escapes of unpaired UTF-16
surrogates (``\\ud800`` alone), the ``NaN`` / ``Infinity`` literals that Python's json
module accepts, and numbers outside the numeric type (131072 digits before the decimal
point, 16383 after). Nesting is limited here to ``MAX_NESTING_DEPTH`` levels so that
neither parsing nor this module's walk can raise RecursionError.

An object with a duplicate key is rejected too. ``json.loads`` keeps only the last value
of a key, but PostgreSQL parses every value, so an earlier value that jsonb cannot store
would pass this module's checks and then fail the insert on every retry. The
``object_pairs_hook`` receives every key of every object, so duplicates are found in every body.

Walking the parsed document costs more than parsing it, so ``parse_storable_json`` walks
only when the text could hold one of these values, as ``_may_be_unstorable`` explains, or
when the parse hooks replaced a number or found a duplicate key.
"""

from __future__ import annotations

import json
import re
import sys
from decimal import Decimal
from typing import Any

from payment_webhook.errors import InvalidEvent

# Stripe events nest a handful of levels; 64 leaves room for expanded objects and metadata.
MAX_NESTING_DEPTH = 64

# Limits of PostgreSQL's numeric type, which jsonb uses for every number.
NUMERIC_MAX_INTEGER_DIGITS = 131_072
NUMERIC_MAX_FRACTION_DIGITS = 16_383

# Paths in messages are cut to this many characters, because keys can be long.
MAX_PATH_CHARS = 200
# Each key in a path or message is cut to this many characters, because a key can carry
# customer data and messages reach the log and the response.
MAX_KEY_CHARS = 40

_SURROGATE = re.compile("[\ud800-\udfff]")
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_]+")
# A run of 12 to 19 digits may be a card number (PAN), so messages never show one whole.
_CARD_NUMBER_LIKE = re.compile(r"\d{12,}")
_INT_MAX_STR_DIGITS = sys.get_int_max_str_digits()
# The JSON escapes that decode to a NUL character or to a UTF-16 surrogate (\ud800 to \udfff).
_NUL_OR_SURROGATE_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


class _UnstorableNumber:
    """Placeholder for a number jsonb cannot store, until the walk finds its path."""

    __slots__ = ("description",)

    def __init__(self, description: str) -> None:
        self.description = description


class _ObjectWithDuplicateKey(dict[str, Any]):
    """A parsed object in which ``duplicate_key`` occurs more than once, until the walk finds its path."""

    __slots__ = ("duplicate_key",)

    def __init__(self, pairs: list[tuple[str, Any]], duplicate_key: str) -> None:
        super().__init__(pairs)
        self.duplicate_key = duplicate_key


class _ParseHooks:
    """``json.loads`` hooks that mark what jsonb cannot store, and count the marks.

    Numbers jsonb cannot store become placeholders, and an object with a duplicate key
    becomes an ``_ObjectWithDuplicateKey``.
    """

    __slots__ = ("unstorable_count",)

    def __init__(self) -> None:
        self.unstorable_count = 0

    def object_pairs(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        document = dict(pairs)
        if len(document) == len(pairs):
            return document
        self.unstorable_count += 1
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                return _ObjectWithDuplicateKey(pairs, key)
            seen.add(key)
        raise AssertionError("unreachable: fewer keys than pairs means a key repeats")

    def parse_constant(self, literal: str) -> _UnstorableNumber:
        self.unstorable_count += 1
        return _UnstorableNumber(f"{literal}, which is not a finite number")

    def parse_float(self, literal: str) -> float | _UnstorableNumber:
        # Without an exponent, a literal this short cannot exceed either numeric limit.
        if len(literal) > NUMERIC_MAX_FRACTION_DIGITS or "e" in literal or "E" in literal:
            number = Decimal(literal)
            exponent = number.as_tuple().exponent
            fraction_digits = -exponent if isinstance(exponent, int) and exponent < 0 else 0
            # A zero has one integer digit whatever its exponent (0e131072 is stored as 0).
            too_large = not number.is_zero() and number.adjusted() >= NUMERIC_MAX_INTEGER_DIGITS
            if too_large or fraction_digits > NUMERIC_MAX_FRACTION_DIGITS:
                self.unstorable_count += 1
                return _UnstorableNumber("a number outside the range of PostgreSQL's numeric type")
        return float(literal)

    def parse_long_int(self, literal: str) -> int | Decimal | _UnstorableNumber:
        # int() refuses more than sys.get_int_max_str_digits() digits (4300 by default),
        # but PostgreSQL's numeric type holds up to 131072. A longer literal becomes a
        # Decimal, which no field that must be an integer accepts.
        digits = len(literal.lstrip("-"))
        if digits > NUMERIC_MAX_INTEGER_DIGITS:
            self.unstorable_count += 1
            return _UnstorableNumber("a number outside the range of PostgreSQL's numeric type")
        if digits > _INT_MAX_STR_DIGITS:
            return Decimal(literal)
        return int(literal)


def parse_storable_json(text: str) -> Any:
    """Parse ``text`` as JSON and check that jsonb can store every value.

    Parameters
    ----------
    text:
        The verified body, decoded as UTF-8.

    Returns
    -------
    Any
        The parsed document.

    Raises
    ------
    InvalidEvent
        The text is not JSON or nests deeper than ``MAX_NESTING_DEPTH``. Also when it
        contains a NUL character, a lone surrogate, a non-finite number, a number outside
        PostgreSQL's numeric range, or an object with a duplicate key. The message names
        the field.
    """
    hooks = _ParseHooks()
    try:
        try:
            document = json.loads(
                text,
                parse_constant=hooks.parse_constant,
                parse_float=hooks.parse_float,
                object_pairs_hook=hooks.object_pairs,
            )
        except json.JSONDecodeError:
            raise
        except ValueError:
            # Only int()'s digit limit raises a plain ValueError here. The integer hook
            # costs a call per integer, so it runs only for such rare bodies.
            hooks = _ParseHooks()
            document = json.loads(
                text,
                parse_constant=hooks.parse_constant,
                parse_float=hooks.parse_float,
                parse_int=hooks.parse_long_int,
                object_pairs_hook=hooks.object_pairs,
            )
    except RecursionError:
        raise InvalidEvent(f"body nests deeper than {MAX_NESTING_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise InvalidEvent(f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if hooks.unstorable_count or _may_be_unstorable(text):
        check_storable(document)
    return document


def _may_be_unstorable(text: str) -> bool:
    """Return whether parsed ``text`` may hold a string, key or nesting level that ``check_storable`` rejects.

    False is certain. ``json.loads`` rejects raw control characters in strings, so a NUL
    character can only come from the escape ``\\u0000``. A surrogate comes from a
    ``\\ud800``-``\\udfff`` escape, or from a raw surrogate in a text that was not decoded
    from UTF-8. Each container opens with one ``[`` or ``{``, so their count bounds the
    nesting depth. Brackets and backslashes inside strings can only turn a False into a
    True, which costs a walk.
    """
    if "\\u" in text and _NUL_OR_SURROGATE_ESCAPE.search(text):
        return True
    if not text.isascii() and _SURROGATE.search(text):
        return True
    # n nested containers reach depth n - 1, and check_storable rejects depth MAX_NESTING_DEPTH.
    # NOTE: a body with more brackets than MAX_NESTING_DEPTH is walked even when it is shallow.
    return text.count("{") + text.count("[") > MAX_NESTING_DEPTH


def check_storable(document: Any) -> None:
    """Raise InvalidEvent naming the first value of ``document`` that jsonb cannot store.

    The walk uses an explicit stack, so its depth is not bounded by Python's recursion limit.
    """
    stack: list[tuple[Any, str, int]] = [(document, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value, path)
        elif isinstance(value, _UnstorableNumber):
            raise InvalidEvent(f"{describe_path(path)} is {value.description}")
        elif isinstance(value, dict | list):
            if depth >= MAX_NESTING_DEPTH:
                raise InvalidEvent(f"{describe_path(path)} nests deeper than {MAX_NESTING_DEPTH} levels")
            if isinstance(value, _ObjectWithDuplicateKey):
                raise InvalidEvent(f"{describe_path(path)} has duplicate key {quote_key(value.duplicate_key)}")
            if isinstance(value, dict):
                for key, child in value.items():
                    _check_key(key, path)
                    stack.append((child, join_path(path, key), depth + 1))
            else:
                for index, child in enumerate(value):
                    stack.append((child, f"{path}[{index}]", depth + 1))


def join_path(parent: str, key: str) -> str:
    """Return the path of ``key`` inside ``parent`` as ``data.object.customer``.

    Keys that are not plain letters, digits and underscores are written as a JSON string
    in brackets, so the path stays readable and free of control characters. A key longer
    than ``MAX_KEY_CHARS`` is cut, with ``...`` after it (outside the quotes).
    """
    if _PLAIN_KEY.fullmatch(key):
        key_text = _mask_digits(key) if len(key) <= MAX_KEY_CHARS else _mask_digits(key[:MAX_KEY_CHARS]) + "..."
        return f"{parent}.{key_text}" if parent else key_text
    return f"{parent}[{quote_key(key)}]"


def quote_key(key: str) -> str:
    """Return ``key`` as a JSON string for a message, cut after ``MAX_KEY_CHARS`` with ``...`` after the quote."""
    if len(key) <= MAX_KEY_CHARS:
        return json.dumps(_mask_digits(key))
    return json.dumps(_mask_digits(key[:MAX_KEY_CHARS])) + "..."


def _mask_digits(key: str) -> str:
    """Replace each run of 12 or more digits in ``key`` with ``[digits]``."""
    return _CARD_NUMBER_LIKE.sub("[digits]", key)


def describe_path(path: str) -> str:
    """Return ``path`` for a message: ``body`` for the root, cut after ``MAX_PATH_CHARS``."""
    if not path:
        return "body"
    if len(path) > MAX_PATH_CHARS:
        return path[:MAX_PATH_CHARS] + "..."
    return path


def _check_text(text: str, path: str) -> None:
    if "\x00" in text:
        raise InvalidEvent(f"{describe_path(path)} contains a NUL character")
    if _SURROGATE.search(text):
        raise InvalidEvent(f"{describe_path(path)} contains a lone UTF-16 surrogate")


def _check_key(key: str, parent: str) -> None:
    where = describe_path(parent) if parent else "the top-level object"
    if "\x00" in key:
        raise InvalidEvent(f"a key in {where} contains a NUL character")
    if _SURROGATE.search(key):
        raise InvalidEvent(f"a key in {where} contains a lone UTF-16 surrogate")
