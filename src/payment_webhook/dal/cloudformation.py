"""Send a custom resource's result to CloudFormation's pre-signed response URL."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

RESPONSE_TIMEOUT_SECONDS = 5.0
RESPONSE_ATTEMPTS = 2


def send_response(response_url: str, response: Mapping[str, Any], timeout_seconds: float) -> bool:
    """PUT ``response`` as JSON to ``response_url``, trying up to ``RESPONSE_ATTEMPTS`` times.

    The URL is pre-signed and its query string is a credential, so only its host is logged.

    Parameters
    ----------
    response_url:
        The event's ``ResponseURL``.
    response:
        The CloudFormation response object (Status, Reason, PhysicalResourceId, ...).
    timeout_seconds:
        Timeout of each attempt.

    Returns
    -------
    bool
        Whether an attempt got a 2xx response. Failures are logged, not raised, because the
        caller has nothing left to do: CloudFormation times the resource out after an hour.
    """
    body = json.dumps(response).encode("utf-8")
    host = urlsplit(response_url).netloc
    for attempt in range(1, RESPONSE_ATTEMPTS + 1):
        # The pre-signed URL was signed without a content type, so the header must be empty.
        request = urllib.request.Request(
            response_url,
            data=body,
            method="PUT",
            headers={"Content-Type": "", "Content-Length": str(len(body))},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout_seconds) as http_response:  # noqa: S310 - URL from CloudFormation
                logger.info(
                    "custom resource response sent",
                    extra={
                        "response_host": host,
                        "http_status": http_response.status,
                        "status": response.get("Status"),
                    },
                )
                return True
        except (urllib.error.URLError, OSError, ValueError) as exc:
            error = str(exc.reason) if isinstance(exc, urllib.error.URLError) else str(exc)
            logger.error(
                "sending the custom resource response failed",
                extra={"response_host": host, "attempt": attempt, "error": error},
            )
    return False
