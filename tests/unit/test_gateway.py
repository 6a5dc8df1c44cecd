"""The local HTTP API gateway: requests in, API Gateway HTTP API payload 2.0 events out.

A test handler echoes the event it received as its response body, so each test sends a
real HTTP request and reads the event the gateway built. The handler runs in the
runtime's worker processes, as the function does.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest

from local_stack.gateway import MAX_PAYLOAD_BYTES, Gateway
from local_stack.runtime import FunctionCode, FunctionPool, FunctionSettings

ROUTE = "/webhooks/payments"

ECHO_HANDLER = textwrap.dedent(
    '''
    """Test handler: echo the event, raise, or return the response that a header contains."""
    import json


    def lambda_handler(event, context):
        headers = event.get("headers", {})
        if "x-test-raise" in headers:
            raise RuntimeError("the test asked the handler to raise")
        if "x-test-response" in headers:
            return json.loads(headers["x-test-response"])
        return {
            "statusCode": 200,
            "headers": {"content-type": "application/json"},
            "body": json.dumps({"event": event}),
        }
    '''
)


@dataclass(frozen=True)
class Answer:
    """An HTTP response as the tests read it."""

    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def event(self) -> dict[str, Any]:
        return self.json()["event"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """Serve the echo handler through two workers and the gateway on a free loopback port."""
    code_dir = tmp_path_factory.mktemp("echo_function")
    (code_dir / "echo_handler.py").write_text(ECHO_HANDLER)
    code = FunctionCode(code_dirs=(Path(code_dir),), origin="source", reason="test handler")
    settings = FunctionSettings(handler="echo_handler.lambda_handler", timeout_seconds=10)
    pool = FunctionPool(code, settings, {}, size=2)
    pool.start()
    server = Gateway(pool.invoke, port=0)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        pool.stop()


def request(
    gateway: Gateway,
    method: str = "POST",
    target: str = ROUTE,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
) -> Answer:
    """Send one request with exactly these header fields (repeats allowed) and read the response."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        connection.putrequest(method, target, skip_accept_encoding=True)
        for name, value in headers or []:
            connection.putheader(name, value)
        if body or method == "POST":
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


def test_event_header_names_lowercase(gateway: Gateway) -> None:
    """Header names reach the function in lower case."""
    event = request(gateway, headers=[("X-Custom-Header", "Value"), ("Stripe-Signature", "t=1,v1=ab")]).event()

    assert event["headers"]["x-custom-header"] == "Value"
    assert event["headers"]["stripe-signature"] == "t=1,v1=ab"
    assert [name for name in event["headers"] if name != name.lower()] == []


def test_event_repeated_headers_joined_with_commas(gateway: Gateway) -> None:
    """A header sent twice arrives once, its values joined with a comma."""
    event = request(gateway, headers=[("X-Repeated", "first"), ("x-repeated", "second")]).event()

    assert event["headers"]["x-repeated"] == "first,second"


def test_event_adds_forwarding_headers(gateway: Gateway) -> None:
    """The event carries the x-forwarded-* and x-amzn-trace-id headers API Gateway adds."""
    headers = request(gateway).event()["headers"]

    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-forwarded-port"] == str(gateway.port)
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-amzn-trace-id"].startswith("Root=1-")


def test_event_drops_hop_by_hop_headers(gateway: Gateway) -> None:
    """Connection-level headers end at the gateway."""
    headers = request(gateway, headers=[("Connection", "keep-alive"), ("Keep-Alive", "timeout=5")]).event()["headers"]

    assert "connection" not in headers
    assert "keep-alive" not in headers


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=utf-8", "text/plain", "application/vnd.api+json"],
)
def test_event_text_body_plain(gateway: Gateway, content_type: str) -> None:
    """JSON and text bodies arrive as plain text, not base64."""
    body = '{"id": "evt_1", "note": "caf\u00e9"}'.encode()

    event = request(gateway, body=body, headers=[("Content-Type", content_type)]).event()

    assert event["isBase64Encoded"] is False
    assert event["body"] == body.decode()


@pytest.mark.parametrize(
    "content_type",
    ["application/octet-stream", "image/png", "application/x-www-form-urlencoded", None],
)
def test_event_binary_body_base64(gateway: Gateway, content_type: str | None) -> None:
    """Bodies of other content types, or without one, arrive base64-encoded."""
    body = b"\x00\x01\xfe\xff binary"
    headers = [("Content-Type", content_type)] if content_type else []

    event = request(gateway, body=body, headers=headers).event()

    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == body


def test_event_json_body_invalid_utf8_base64(gateway: Gateway) -> None:
    """A JSON-typed body that is not UTF-8 arrives base64-encoded, byte for byte."""
    body = b'{"note": "\xff"}'

    event = request(gateway, body=body, headers=[("Content-Type", "application/json")]).event()

    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == body


def test_event_empty_body_absent(gateway: Gateway) -> None:
    """A request without a body gives an event without a body key."""
    event = request(gateway).event()

    assert "body" not in event
    assert event["isBase64Encoded"] is False


def test_event_top_level_fields(gateway: Gateway) -> None:
    """version, routeKey, rawPath and rawQueryString have API Gateway's values."""
    event = request(gateway).event()

    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /webhooks/payments"
    assert event["rawPath"] == ROUTE
    assert event["rawQueryString"] == ""
    assert "queryStringParameters" not in event
    assert "cookies" not in event


def test_event_request_context_fields(gateway: Gateway) -> None:
    """requestContext has every field API Gateway sets, with the right types."""
    before_ms = int(time.time() * 1000)
    context = request(gateway, headers=[("User-Agent", "Stripe/1.0")]).event()["requestContext"]

    for name in ("accountId", "apiId", "domainName", "domainPrefix", "requestId"):
        assert isinstance(context[name], str) and context[name], name
    assert context["domainName"] == "127.0.0.1"
    assert context["domainPrefix"] == "127"
    assert context["routeKey"] == "POST /webhooks/payments"
    assert context["stage"] == "$default"
    assert context["http"] == {
        "method": "POST",
        "path": ROUTE,
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "Stripe/1.0",
    }
    assert re.fullmatch(r"\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} \+0000", context["time"])
    assert isinstance(context["timeEpoch"], int)
    assert context["timeEpoch"] >= before_ms - 1000


def test_event_time_and_epoch_agree(gateway: Gateway) -> None:
    """requestContext.time is timeEpoch written in API Gateway's format, in UTC."""
    context = request(gateway).event()["requestContext"]

    expected = time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(context["timeEpoch"] // 1000))
    assert context["time"] == expected


def test_event_request_ids_unique(gateway: Gateway) -> None:
    """Each request gets its own requestId, also returned in the apigw-requestid header."""
    first = request(gateway)
    second = request(gateway)

    assert first.event()["requestContext"]["requestId"] != second.event()["requestContext"]["requestId"]
    assert first.headers["apigw-requestid"] == first.event()["requestContext"]["requestId"]


def test_event_query_string_parameters(gateway: Gateway) -> None:
    """Query parameters are decoded, and a repeated one is joined with commas."""
    event = request(gateway, target=ROUTE + "?a=1&a=2&b=x%20y&empty=").event()

    assert event["rawQueryString"] == "a=1&a=2&b=x%20y&empty="
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y", "empty": ""}
    assert event["rawPath"] == ROUTE


def test_event_cookies_field(gateway: Gateway) -> None:
    """Cookies move from the cookie header to the cookies list."""
    event = request(gateway, headers=[("Cookie", "session=abc; theme=dark")]).event()

    assert event["cookies"] == ["session=abc", "theme=dark"]
    assert "cookie" not in event["headers"]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_other_method_not_found(gateway: Gateway, method: str) -> None:
    """Methods other than POST on the webhook path get API Gateway's 404."""
    answer = request(gateway, method=method)

    assert answer.status == HTTPStatus.NOT_FOUND
    assert answer.json() == {"message": "Not Found"}


@pytest.mark.parametrize(
    "path", ["/", "/webhooks", "/webhooks/payments/", "/webhooks/payments/extra", "/WEBHOOKS/PAYMENTS"]
)
def test_other_path_not_found(gateway: Gateway, path: str) -> None:
    """POST to any other path gets API Gateway's 404."""
    answer = request(gateway, target=path, body=b"{}", headers=[("Content-Type", "application/json")])

    assert answer.status == HTTPStatus.NOT_FOUND
    assert answer.json() == {"message": "Not Found"}


def test_payload_over_limit_rejected(gateway: Gateway) -> None:
    """A body over 10 MB gets 413 and never reaches the function."""
    answer = request(gateway, body=b"x" * (MAX_PAYLOAD_BYTES + 1), headers=[("Content-Type", "application/json")])

    assert answer.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    assert answer.json() == {"message": "Request Entity Too Large"}


def test_payload_over_limit_rejected_before_body_sent(gateway: Gateway) -> None:
    """With Expect: 100-continue, 413 comes back before the client sends any body byte."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        connection.putrequest("POST", ROUTE)
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(MAX_PAYLOAD_BYTES + 1))
        connection.putheader("Expect", "100-continue")
        connection.endheaders()
        response = connection.getresponse()
        status = response.status
    finally:
        connection.close()

    assert status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE


def test_payload_at_limit_accepted(gateway: Gateway) -> None:
    """A body of exactly 10 MB passes the gateway's limit and reaches the function."""
    body = b"x" * MAX_PAYLOAD_BYTES
    answer = request(gateway, body=body, headers=[("Content-Type", "text/plain")])

    assert answer.status == HTTPStatus.OK
    assert len(answer.event()["body"]) == MAX_PAYLOAD_BYTES


def test_handler_exception_internal_server_error(gateway: Gateway) -> None:
    """A handler that raises gets API Gateway's 500, and the gateway records it."""
    errors_before = len(gateway.internal_errors)

    answer = request(gateway, headers=[("X-Test-Raise", "1")])

    assert answer.status == HTTPStatus.INTERNAL_SERVER_ERROR
    assert answer.json() == {"message": "Internal Server Error"}
    assert len(gateway.internal_errors) == errors_before + 1
    assert "RuntimeError" in gateway.internal_errors[-1][1]


@pytest.mark.parametrize(
    "response",
    [
        {"statusCode": "200", "body": "{}"},
        {"statusCode": 99, "body": "{}"},
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "headers": ["x"], "body": "{}"},
        {"statusCode": 200, "body": "not base64!", "isBase64Encoded": True},
    ],
)
def test_malformed_response_server_error(gateway: Gateway, response: dict[str, Any]) -> None:
    """A response API Gateway cannot map gets 500, as in AWS."""
    answer = request(gateway, headers=[("X-Test-Response", json.dumps(response))])

    assert answer.status == HTTPStatus.INTERNAL_SERVER_ERROR
    assert answer.json() == {"message": "Internal Server Error"}


def test_response_mapped_to_http(gateway: Gateway) -> None:
    """statusCode, headers, cookies and a base64 body become the HTTP response."""
    response = {
        "statusCode": 201,
        "headers": {"content-type": "application/octet-stream", "x-answer": "42"},
        "cookies": ["a=1; Path=/", "b=2"],
        "body": base64.b64encode(b"\x00binary\xff").decode(),
        "isBase64Encoded": True,
    }

    answer = request(gateway, headers=[("X-Test-Response", json.dumps(response))])

    assert answer.status == HTTPStatus.CREATED
    assert answer.headers["content-type"] == "application/octet-stream"
    assert answer.headers["x-answer"] == "42"
    assert answer.headers.get_all("set-cookie") == ["a=1; Path=/", "b=2"]
    assert answer.body == b"\x00binary\xff"


def test_response_without_status_code_is_json_body(gateway: Gateway) -> None:
    """A result without statusCode becomes a 200 JSON body, as payload 2.0 specifies."""
    answer = request(gateway, headers=[("X-Test-Response", json.dumps({"hello": "world"}))])

    assert answer.status == HTTPStatus.OK
    assert answer.headers["content-type"] == "application/json"
    assert answer.json() == {"hello": "world"}


def test_keep_alive_connection_serves_several_requests(gateway: Gateway) -> None:
    """One HTTP/1.1 connection carries several requests, including after a 404."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    statuses = []
    try:
        for target in (ROUTE, "/missing", ROUTE):
            connection.request("POST", target, body=b"{}", headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
    finally:
        connection.close()

    assert statuses == [HTTPStatus.OK, HTTPStatus.NOT_FOUND, HTTPStatus.OK]


def test_client_close_echoed_in_response(gateway: Gateway) -> None:
    """A request with "Connection: close" gets "Connection: close" back, then the socket closes."""
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        connection.request(
            "POST", ROUTE, body=b"{}", headers={"Content-Type": "application/json", "Connection": "close"}
        )
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()

    assert response.status == HTTPStatus.OK
    assert response.getheader("Connection") == "close"


def test_request_handler_disables_nagle() -> None:
    """Responses are written without Nagle's delay, which stalls kept-alive connections by about 40 ms."""
    from local_stack.gateway import _GatewayRequestHandler

    assert _GatewayRequestHandler.disable_nagle_algorithm is True


def test_concurrent_connections_all_served(gateway: Gateway) -> None:
    """Sixty-four clients connecting at once all get a response; none is reset."""

    def post(index: int) -> int | str:
        try:
            return request(gateway, body=b"{}", headers=[("Content-Type", "application/json")]).status
        except OSError as exc:
            return f"request {index}: {exc!r}"

    with ThreadPoolExecutor(max_workers=64) as executor:
        outcomes = list(executor.map(post, range(64)))

    assert [outcome for outcome in outcomes if outcome != HTTPStatus.OK] == []
