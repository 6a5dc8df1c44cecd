"""The parts of an HTTP request that the webhook reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class WebhookRequest:
    """One webhook delivery as API Gateway passed it, before any check.

    ``headers`` has lower-case names. ``body`` is the text API Gateway passed: the raw
    body, or its base64 encoding when ``is_base64_encoded`` is true.
    """

    headers: Mapping[str, str]
    body: str
    is_base64_encoded: bool
    request_id: str | None = None

    def header(self, name: str) -> str | None:
        """Return the value of header ``name`` (any letter case), or None when it is absent."""
        return self.headers.get(name.lower())
