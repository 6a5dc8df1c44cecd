"""HTTP adapter comparison: Powertools' APIGatewayHttpResolver against the function's own adapter.

Import time comes from bench.imports (fresh interpreters). This module adds the cost per
request of turning an HTTP API event into a call and a response, warm and in-process,
with a route that does nothing else: the resolver's routing against the function's
``adapt_http_api_event`` and ``build_response``.
"""

from __future__ import annotations

import time
from http import HTTPStatus
from typing import Any

from bench.events import LambdaContext, signed_delivery
from bench.stats import summarize

WARMUP_CALLS = 200


def compare_adapters(samples: int) -> dict[str, Any]:
    """Time ``samples`` warm dispatches of one webhook request through each adapter, in microseconds."""
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
    from payment_webhook.handlers.webhook import adapt_http_api_event, build_response

    resolver = APIGatewayHttpResolver()

    @resolver.post("/webhooks/payments")
    def receive() -> Response:
        body = resolver.current_event.body or ""
        return Response(
            status_code=HTTPStatus.OK, content_type="application/json", body='{"length": %d}' % len(body)
        )

    event = signed_delivery("evt_adapter_comparison", "whsec_adapter_comparison")
    context = LambdaContext()
    resolver_us: list[float] = []
    adapter_us: list[float] = []
    for index in range(WARMUP_CALLS + samples):
        start = time.perf_counter_ns()
        resolver.resolve(event, context)
        middle = time.perf_counter_ns()
        request = adapt_http_api_event(event)
        build_response(HTTPStatus.OK, {"length": len(request.body)})
        end = time.perf_counter_ns()
        if index >= WARMUP_CALLS:
            resolver_us.append((middle - start) / 1000.0)
            adapter_us.append((end - middle) / 1000.0)
    return {
        "powertools_resolver_us": summarize(resolver_us).as_dict(1),
        "function_adapter_us": summarize(adapter_us).as_dict(1),
    }
