"""API Gateway's HTTP API on 127.0.0.1: requests in, payload format 2.0 events to the function.

One route exists, as in the template: ``POST /webhooks/payments``. A request to it becomes
an HTTP API payload 2.0 event for the function, and the function's response
(``statusCode``, ``headers``, ``cookies``, ``body``, ``isBase64Encoded``) becomes the HTTP
response. The rest follows what API Gateway does:

- any other route or method gets 404 ``{"message":"Not Found"}``;
- a request body over 10 MB (HTTP API's payload quota) gets 413 before the body is read;
- a function error, a timeout or a malformed function response gets 500
  ``{"message":"Internal Server Error"}`` and is logged; :attr:`Gateway.internal_errors`
  counts them so tests can check the product never causes one.
"""

from __future__ import annotations

import base64
import binascii
import errno
import json
import logging
import secrets
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from local_stack.runtime import LOCAL_ACCOUNT_ID, FunctionPoolClosed, Invocation

logger = logging.getLogger(__name__)

WEBHOOK_ROUTE_KEY = "POST /webhooks/payments"
# HTTP API's maximum payload size (API Gateway quotas: 10 MB).
# NOTE: the quota does not say whether 10 MB means 10,000,000 or 10,485,760 bytes; this uses the larger.
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
STAGE = "$default"
API_ID = "local"
# After a 413 the client may still be sending. Reading and discarding the rest lets it
# finish and read the response, instead of getting a connection reset.
DISCARD_MAX_SECONDS = 5.0
DISCARD_IDLE_SECONDS = 1.0

# API Gateway sends these content types to the function as plain text and base64-encodes
# every other type, including a request without Content-Type. The documentation does not
# list them. This list follows a comparison against a deployed HTTP API published in
# ministackorg/ministack pull request 766.
# NOTE: ``+json`` types (application/vnd.api+json) stay text here by the project's choice;
# that case was not compared against AWS.
TEXT_CONTENT_TYPES = frozenset({"application/json", "application/xml", "application/javascript"})

# Hop-by-hop headers (RFC 9110, section 7.6.1) end at the gateway and never reach the function.
HOP_BY_HOP_HEADERS = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
)

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

InvokeFunction = Callable[[dict[str, Any], str], Invocation]


class GatewayError(RuntimeError):
    """The gateway could not start."""


class GatewayPortInUse(GatewayError):
    """Another process listens on the requested port."""

    def __init__(self, host: str, port: int) -> None:
        super().__init__(f"port {port} on {host} is in use")
        self.host = host
        self.port = port


class InvalidFunctionResponse(ValueError):
    """The function returned something API Gateway cannot turn into an HTTP response."""


@dataclass(frozen=True)
class HttpResponse:
    """A response ready to send: status, header list (repeats allowed) and body bytes."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes


def is_text_content_type(content_type: str | None) -> bool:
    """Return whether API Gateway passes a body of ``content_type`` as text (else base64)."""
    if not content_type:
        return False
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type.startswith("text/") or media_type in TEXT_CONTENT_TYPES or media_type.endswith("+json")


def format_request_time(epoch_seconds: float) -> str:
    """Return ``epoch_seconds`` in API Gateway's requestContext.time format (04/Dec/2026:20:03:14 +0000)."""
    moment = time.gmtime(epoch_seconds)
    month = _MONTHS[moment.tm_mon - 1]
    clock = f"{moment.tm_hour:02d}:{moment.tm_min:02d}:{moment.tm_sec:02d}"
    return f"{moment.tm_mday:02d}/{month}/{moment.tm_year}:{clock} +0000"


def new_request_id() -> str:
    """Return a unique request id in API Gateway's style (base64 text, e.g. ``JKJaXmPLvHcESHA=``)."""
    return base64.b64encode(secrets.token_bytes(11)).decode()


def new_trace_id(epoch_seconds: float) -> str:
    """Return an X-Ray trace header value of the form API Gateway adds (``Root=1-<time>-<random>``)."""
    return f"Root=1-{int(epoch_seconds):08x}-{secrets.token_hex(12)}"


def build_event(
    *,
    method: str,
    target: str,
    protocol: str,
    headers: list[tuple[str, str]],
    body: bytes,
    source_ip: str,
    server_port: int,
    request_id: str,
    trace_id: str,
    received_at: float,
    route_key: str = WEBHOOK_ROUTE_KEY,
    account_id: str = LOCAL_ACCOUNT_ID,
) -> dict[str, Any]:
    """Return the HTTP API payload format 2.0 event for one request.

    Parameters
    ----------
    method, target, protocol:
        The request line: method, request target (path and query string) and HTTP version.
    headers:
        Header fields in the order received; a name may repeat.
    body:
        The raw body bytes.
    source_ip, server_port:
        The client's address and the port the request came in on.
    request_id, trace_id:
        API Gateway's request id and the X-Ray trace header for this request.
    received_at:
        Epoch seconds when the request arrived.

    Returns
    -------
    dict
        The event. Header names are lowercase and repeated headers are joined with
        commas. Cookie headers move to ``cookies``. ``body`` is absent when empty, and
        base64-encoded (``isBase64Encoded`` true) unless the content type is text.
    """
    raw_path, _, raw_query = target.partition("?")
    event_headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in headers:
        key = name.lower()
        if key == "cookie":
            cookies += [cookie.strip() for cookie in value.split(";") if cookie.strip()]
            continue
        if key in HOP_BY_HOP_HEADERS:
            continue
        event_headers[key] = f"{event_headers[key]},{value}" if key in event_headers else value
    forwarded_for = event_headers.get("x-forwarded-for")
    event_headers["x-forwarded-for"] = f"{forwarded_for}, {source_ip}" if forwarded_for else source_ip
    event_headers["x-forwarded-port"] = str(server_port)
    event_headers["x-forwarded-proto"] = "http"
    event_headers.setdefault("x-amzn-trace-id", trace_id)

    domain_name = event_headers.get("host", "127.0.0.1").rsplit(":", 1)[0]
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = event_headers
    if raw_query:
        parameters: dict[str, str] = {}
        for name, value in parse_qsl(raw_query, keep_blank_values=True):
            parameters[name] = f"{parameters[name]},{value}" if name in parameters else value
        event["queryStringParameters"] = parameters
    event["requestContext"] = {
        "accountId": account_id,
        "apiId": API_ID,
        "domainName": domain_name,
        "domainPrefix": domain_name.split(".", 1)[0],
        "http": {
            "method": method,
            "path": raw_path,
            "protocol": protocol,
            "sourceIp": source_ip,
            "userAgent": event_headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route_key,
        "stage": STAGE,
        "time": format_request_time(received_at),
        "timeEpoch": int(received_at * 1000),
    }
    is_base64 = False
    if body:
        text = _decode_text_body(body, event_headers.get("content-type"))
        if text is None:
            is_base64 = True
            event["body"] = base64.b64encode(body).decode("ascii")
        else:
            event["body"] = text
    event["isBase64Encoded"] = is_base64
    return event


def _decode_text_body(body: bytes, content_type: str | None) -> str | None:
    """Return the body as text when API Gateway would pass it as text, else None."""
    if not is_text_content_type(content_type):
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        # NOTE: what API Gateway does with invalid UTF-8 under a text type is unverified.
        # Base64 keeps the exact bytes, which a signature check needs.
        return None


def response_from_result(result: Any) -> HttpResponse:
    """Turn a function's payload 2.0 response into an HTTP response.

    A dict with ``statusCode`` is a full response. Any other JSON value is a body on
    its own, which API Gateway returns with status 200 as JSON.

    Raises
    ------
    InvalidFunctionResponse
        The response has a wrong type in statusCode, headers, cookies or body, or a body
        flagged base64 that does not decode.
    """
    if not (isinstance(result, dict) and "statusCode" in result):
        body = json.dumps(result).encode()
        return HttpResponse(HTTPStatus.OK, (("Content-Type", "application/json"),), body)

    status = result["statusCode"]
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise InvalidFunctionResponse(f"statusCode {status!r} is not an HTTP status code")
    headers: list[tuple[str, str]] = []
    raw_headers = result.get("headers") or {}
    if not isinstance(raw_headers, dict):
        raise InvalidFunctionResponse(f"headers is a {type(raw_headers).__name__}, not an object")
    for name, value in raw_headers.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise InvalidFunctionResponse(f"header {name!r} has a {type(value).__name__} value, not a string")
        if name.lower() in ("content-length", "transfer-encoding", "connection"):
            continue
        headers.append((str(name), str(value)))
    cookies = result.get("cookies") or []
    if not isinstance(cookies, list) or not all(isinstance(cookie, str) for cookie in cookies):
        raise InvalidFunctionResponse("cookies is not a list of strings")
    headers += [("Set-Cookie", cookie) for cookie in cookies]

    body = result.get("body")
    if body is None:
        return HttpResponse(status, tuple(headers), b"")
    if not isinstance(body, str):
        raise InvalidFunctionResponse(f"body is a {type(body).__name__}, not a string")
    if result.get("isBase64Encoded"):
        try:
            return HttpResponse(status, tuple(headers), base64.b64decode(body, validate=True))
        except binascii.Error as exc:
            raise InvalidFunctionResponse(f"body is flagged isBase64Encoded but is not base64: {exc}") from exc
    return HttpResponse(status, tuple(headers), body.encode())


def _message_response(status: HTTPStatus, message: str) -> HttpResponse:
    body = json.dumps({"message": message}, separators=(",", ":")).encode()
    return HttpResponse(status, (("Content-Type", "application/json"),), body)


NOT_FOUND = _message_response(HTTPStatus.NOT_FOUND, "Not Found")
PAYLOAD_TOO_LARGE = _message_response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "Request Entity Too Large")
BAD_REQUEST = _message_response(HTTPStatus.BAD_REQUEST, "Bad Request")
INTERNAL_SERVER_ERROR = _message_response(HTTPStatus.INTERNAL_SERVER_ERROR, "Internal Server Error")
SERVICE_UNAVAILABLE = _message_response(HTTPStatus.SERVICE_UNAVAILABLE, "Service Unavailable")


class _PayloadTooLarge(Exception):
    def __init__(self, unread_bytes: int | None) -> None:
        super().__init__("payload too large")
        self.unread_bytes = unread_bytes


class _MalformedRequest(Exception):
    pass


class _GatewayRequestHandler(BaseHTTPRequestHandler):
    """Serve one connection: every request goes through :meth:`_handle`."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes. With Nagle's algorithm on, the second write
    # waits for the client's delayed ACK (about 40 ms) on a kept-alive connection.
    disable_nagle_algorithm = True
    server_version = "local-api-gateway"
    sys_version = ""
    server: _GatewayHTTPServer

    def do_POST(self) -> None:  # noqa: N802 - name set by BaseHTTPRequestHandler
        self._handle()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_POST  # noqa: N815

    def handle_expect_100(self) -> bool:
        """Respond 413 instead of 100 Continue when the declared body is over the limit."""
        length = self.headers.get("Content-Length", "")
        if length.strip().isdigit() and int(length) > MAX_PAYLOAD_BYTES:
            self._send(PAYLOAD_TOO_LARGE, new_request_id(), close=True)
            self._log_request(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, time.monotonic())
            return False
        return super().handle_expect_100()

    def _handle(self) -> None:
        started = time.monotonic()
        received_at = time.time()
        request_id = new_request_id()
        try:
            body = self._read_body()
        except _PayloadTooLarge as exc:
            self._send(PAYLOAD_TOO_LARGE, request_id, close=True)
            self._discard(exc.unread_bytes)
            self._log_request(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, started)
            return
        except _MalformedRequest as exc:
            logger.info("rejected a malformed request: %s", exc)
            self._send(BAD_REQUEST, request_id, close=True)
            return

        raw_path = self._request_target().partition("?")[0]
        if f"{self.command} {raw_path}" != self.server.route_key:
            self._send(NOT_FOUND, request_id)
            self._log_request(HTTPStatus.NOT_FOUND, started)
            return

        trace_id = self.headers.get("X-Amzn-Trace-Id") or new_trace_id(received_at)
        event = build_event(
            method=self.command,
            target=self._request_target(),
            protocol=self.request_version,
            headers=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
            server_port=self.server.server_address[1],
            request_id=request_id,
            trace_id=trace_id,
            received_at=received_at,
            route_key=self.server.route_key,
        )
        response = self._invoke(event, trace_id, request_id)
        self._send(response, request_id)
        self._log_request(response.status, started)

    def _invoke(self, event: dict[str, Any], trace_id: str, request_id: str) -> HttpResponse:
        try:
            invocation = self.server.invoke(event, trace_id)
        except FunctionPoolClosed:
            logger.warning("request %s arrived while the function was stopping: 503", request_id)
            return SERVICE_UNAVAILABLE
        except Exception:
            logger.exception("invoking the function failed for request %s", request_id)
            self.server.record_internal_error(request_id, "invoking the function raised")
            return INTERNAL_SERVER_ERROR
        if invocation.error is not None:
            logger.error(
                "function error for request %s (Lambda request %s): %s\n%s",
                request_id,
                invocation.request_id,
                invocation.error.summary(),
                "".join(invocation.error.stack_trace).rstrip(),
            )
            self.server.record_internal_error(request_id, invocation.error.summary())
            return INTERNAL_SERVER_ERROR
        try:
            return response_from_result(invocation.result)
        except InvalidFunctionResponse as exc:
            logger.error("malformed function response for request %s: %s", request_id, exc)
            self.server.record_internal_error(request_id, f"malformed function response: {exc}")
            return INTERNAL_SERVER_ERROR

    def _request_target(self) -> str:
        target = self.path
        # A proxy-style absolute target (http://host/path) carries the path after the host.
        for scheme in ("http://", "https://"):
            if target.startswith(scheme):
                slash = target.find("/", len(scheme))
                return target[slash:] if slash != -1 else "/"
        return target

    def _read_body(self) -> bytes:
        """Read the body named by Content-Length or sent chunked, stopping at the payload limit."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked_body()
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b""
        if not length_header.strip().isdigit():
            raise _MalformedRequest(f"Content-Length {length_header!r} is not a number")
        length = int(length_header)
        if length > MAX_PAYLOAD_BYTES:
            raise _PayloadTooLarge(length)
        body = self.rfile.read(length)
        if len(body) < length:
            raise _MalformedRequest(f"the body ended after {len(body)} of {length} bytes")
        return body

    def _read_chunked_body(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024)
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError as exc:
                raise _MalformedRequest(f"chunk size {size_line[:40]!r} is not hexadecimal") from exc
            if size == 0:
                break
            total += size
            if total > MAX_PAYLOAD_BYTES:
                raise _PayloadTooLarge(None)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)
        # Trailer fields end with an empty line.
        while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
            pass
        return b"".join(chunks)

    def _discard(self, unread_bytes: int | None) -> None:
        """Read and drop what the client still sends, within a time limit, then close."""
        self.close_connection = True
        deadline = time.monotonic() + DISCARD_MAX_SECONDS
        remaining = unread_bytes
        try:
            self.connection.settimeout(DISCARD_IDLE_SECONDS)
            while (remaining is None or remaining > 0) and time.monotonic() < deadline:
                chunk = self.rfile.read1(65536 if remaining is None else min(65536, remaining))
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
        except OSError:
            pass

    def _send(self, response: HttpResponse, request_id: str, close: bool = False) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("apigw-requestid", request_id)
        # close_connection is already set when the client sent "Connection: close" or
        # spoke HTTP/1.0 without keep-alive. The response then carries the header too.
        if close or self.close_connection:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD" and response.body:
            self.wfile.write(response.body)

    def _log_request(self, status: int, started: float) -> None:
        elapsed_ms = (time.monotonic() - started) * 1000
        logger.info("%s %s -> %d (%.0f ms)", self.command, self.path.partition("?")[0], status, elapsed_ms)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature set by the base class
        """Send the base class's own lines (protocol errors) to debug logging; _log_request logs requests."""
        logger.debug("%s - %s", self.address_string(), format % args)


class _GatewayHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's listen backlog of 5 resets connections when tens of clients connect
    # at once (load tests); API Gateway accepts them.
    request_queue_size = socket.SOMAXCONN

    def __init__(
        self,
        address: tuple[str, int],
        route_key: str,
        invoke: InvokeFunction,
        record_internal_error: Callable[[str, str], None],
    ) -> None:
        self.route_key = route_key
        self.invoke = invoke
        self.record_internal_error = record_internal_error
        self._open_connections: set[socket.socket] = set()
        self._lock = threading.Lock()
        super().__init__(address, _GatewayRequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's FQDN, a DNS query this server does not need.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def finish_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._open_connections.add(request)
        super().finish_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._open_connections.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """Shut down the keep-alive connections that are still open, so no request follows."""
        with self._lock:
            connections = list(self._open_connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class Gateway:
    """The local HTTP API: a threading HTTP server on a loopback address.

    Parameters
    ----------
    invoke:
        Called with (event, trace header) for each request to the route; returns the
        :class:`~local_stack.runtime.Invocation` (``FunctionPool.invoke``).
    host, port:
        Where to listen; port 0 picks a free port.
    route_key:
        The one route, as API Gateway writes it (``POST /webhooks/payments``).
    """

    def __init__(
        self,
        invoke: InvokeFunction,
        host: str = "127.0.0.1",
        port: int = 0,
        route_key: str = WEBHOOK_ROUTE_KEY,
    ) -> None:
        self.invoke = invoke
        self.host = host
        self.requested_port = port
        self.route_key = route_key
        self._server: _GatewayHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._internal_errors: list[tuple[str, str]] = []
        self._errors_lock = threading.Lock()

    @property
    def port(self) -> int:
        if self._server is None:
            raise GatewayError("the gateway is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def route_url(self) -> str:
        """Return the full URL of the route (what the stack's WebhookUrl output holds)."""
        return self.base_url + self.route_key.split(" ", 1)[1]

    @property
    def internal_errors(self) -> list[tuple[str, str]]:
        """Return (request id, reason) of every 500 response this gateway sent, also after stop()."""
        with self._errors_lock:
            return list(self._internal_errors)

    def _record_internal_error(self, request_id: str, reason: str) -> None:
        with self._errors_lock:
            self._internal_errors.append((request_id, reason))

    def start(self) -> None:
        """Bind the port and serve in a background thread.

        Raises
        ------
        GatewayPortInUse
            Another process listens on the port.
        GatewayError
            The port cannot be bound for another reason.
        """
        try:
            self._server = _GatewayHTTPServer(
                (self.host, self.requested_port), self.route_key, self.invoke, self._record_internal_error
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise GatewayPortInUse(self.host, self.requested_port) from exc
            raise GatewayError(f"cannot listen on {self.host}:{self.requested_port}: {exc}") from exc
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="gateway", daemon=True
        )
        self._thread.start()
        logger.debug("gateway listening on %s", self.base_url)

    def stop(self) -> None:
        """Stop accepting requests and close the listening socket and open connections. Safe to call twice."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._server.close_open_connections()
        if self._thread is not None:
            self._thread.join()
        self._server = None
        self._thread = None
