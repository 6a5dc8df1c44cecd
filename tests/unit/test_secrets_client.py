"""The stdlib Secrets Manager client: SigV4 against botocore, calls against moto and fake servers."""

from __future__ import annotations

import datetime
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest

from payment_webhook.config import SecretsManagerSettings
from payment_webhook.dal.secrets_client import (
    CONTENT_TYPE,
    GET_SECRET_VALUE_TARGET,
    AwsCredentials,
    SecretsManagerClient,
    sign_v4,
)
from payment_webhook.deadline import Deadline
from payment_webhook.errors import (
    ConfigurationError,
    DeadlineExceeded,
    SecretAccessDenied,
    SecretFormatError,
    SecretNotFound,
    SecretRequestFailed,
    SecretStoreUnreachable,
)

SIGNING_TIME = datetime.datetime(2026, 3, 14, 15, 9, 26, tzinfo=datetime.UTC)
BODY = json.dumps({"SecretId": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db"}).encode()
REQUEST_HEADERS = {"Content-Type": CONTENT_TYPE, "X-Amz-Target": GET_SECRET_VALUE_TARGET}


def botocore_authorization(url: str, credentials: AwsCredentials, monkeypatch: pytest.MonkeyPatch) -> str:
    """Return the Authorization header botocore computes for the same request and time."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: SIGNING_TIME.replace(tzinfo=None))
    request = botocore.awsrequest.AWSRequest(method="POST", url=url, data=BODY, headers=dict(REQUEST_HEADERS))
    signer = botocore.auth.SigV4Auth(
        botocore.credentials.Credentials(
            credentials.access_key_id, credentials.secret_access_key, credentials.session_token
        ),
        "secretsmanager",
        "us-east-1",
    )
    signer.add_auth(request)
    return str(request.headers["Authorization"])


def our_authorization(url: str, credentials: AwsCredentials) -> str:
    headers = sign_v4(
        method="POST",
        url=url,
        headers=REQUEST_HEADERS,
        body=BODY,
        credentials=credentials,
        region="us-east-1",
        service="secretsmanager",
        now=SIGNING_TIME,
    )
    return headers["Authorization"]


@pytest.mark.parametrize(
    "url",
    [
        "https://secretsmanager.us-east-1.amazonaws.com/",
        "http://127.0.0.1:4566/",
        "https://secretsmanager.us-east-1.amazonaws.com:443/",
    ],
)
def test_sigv4_matches_botocore_with_session_token(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Authorization header equals botocore's for a request with a session token."""
    credentials = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "session-token-value")
    assert our_authorization(url, credentials) == botocore_authorization(url, credentials, monkeypatch)


def test_sigv4_matches_botocore_without_session_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Authorization header equals botocore's for long-term keys."""
    credentials = AwsCredentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    url = "https://secretsmanager.us-east-1.amazonaws.com/"
    assert our_authorization(url, credentials) == botocore_authorization(url, credentials, monkeypatch)


def test_sigv4_adds_token_and_date_headers() -> None:
    """The signed request carries X-Amz-Date and X-Amz-Security-Token."""
    headers = sign_v4(
        method="POST",
        url="http://127.0.0.1:4566/",
        headers=REQUEST_HEADERS,
        body=BODY,
        credentials=AwsCredentials("AKID", "secret", "token"),
        region="us-east-1",
        service="secretsmanager",
        now=SIGNING_TIME,
    )
    assert headers["X-Amz-Date"] == "20260314T150926Z"
    assert headers["X-Amz-Security-Token"] == "token"
    assert headers["Host"] == "127.0.0.1:4566"


def test_credentials_repr_hides_keys() -> None:
    """Neither the secret key nor the token appears in repr."""
    text = repr(AwsCredentials("AKID", "very-secret-key", "very-secret-token"))
    assert "very-secret" not in text


def test_credentials_missing_named() -> None:
    """Missing credentials name both variables."""
    with pytest.raises(ConfigurationError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        AwsCredentials.from_environment({"AWS_ACCESS_KEY_ID": "AKID"})


def moto_client(secrets_manager: Any) -> SecretsManagerClient:
    return SecretsManagerClient(SecretsManagerSettings(region="us-east-1", endpoint_url=secrets_manager.endpoint_url))


def test_get_secret_string_from_moto(secrets_manager: Any) -> None:
    """The client reads a secret's current value from moto's server."""
    arn = secrets_manager.create_secret(f"client-test-{time.time_ns()}", "whsec_value")
    assert moto_client(secrets_manager).get_secret_string(arn, Deadline.after(10)) == "whsec_value"


def test_get_secret_string_after_put_from_moto(secrets_manager: Any) -> None:
    """The client reads the newest value after put-secret-value."""
    arn = secrets_manager.create_secret(f"client-test-{time.time_ns()}", "first")
    secrets_manager.put_secret_value(arn, "second")
    assert moto_client(secrets_manager).get_secret_string(arn, Deadline.after(10)) == "second"


def test_missing_secret_raises_not_found(secrets_manager: Any) -> None:
    """An unknown ARN raises SecretNotFound with the error code."""
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:does-not-exist-AbCdEf"
    with pytest.raises(SecretNotFound) as caught:
        moto_client(secrets_manager).get_secret_string(arn, Deadline.after(10))
    assert caught.value.error_code == "ResourceNotFoundException"


@dataclass
class FakeAwsServer:
    """An HTTP server on 127.0.0.1 that responds to every request with a fixed status and body."""

    status: int = 200
    body: bytes = b"{}"
    delay_seconds: float = 0.0
    requests: list[dict[str, str]] = field(default_factory=list)
    url: str = ""


@pytest.fixture
def fake_aws_server() -> Iterator[FakeAwsServer]:
    """Start a fake AWS endpoint on a loopback port and stop it after the test."""
    state = FakeAwsServer()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
            length = int(self.headers.get("Content-Length", "0"))
            self.rfile.read(length)
            state.requests.append(dict(self.headers.items()))
            if state.delay_seconds:
                time.sleep(state.delay_seconds)
            try:
                self.send_response(state.status)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(state.body)))
                self.end_headers()
                self.wfile.write(state.body)
            except OSError:
                pass  # the client gave up (timeout test)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature fixed by the base class
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def fake_client(server: FakeAwsServer, timeout_seconds: float = 2.0) -> SecretsManagerClient:
    return SecretsManagerClient(
        SecretsManagerSettings(region="us-east-1", endpoint_url=server.url),
        timeout_seconds=timeout_seconds,
        credentials_provider=lambda: AwsCredentials("AKID", "secret", "token"),
    )


def test_request_headers_sent(fake_aws_server: FakeAwsServer) -> None:
    """The request carries the JSON 1.1 target, content type, token and a SigV4 Authorization."""
    fake_aws_server.body = b'{"SecretString": "v"}'
    fake_client(fake_aws_server).get_secret_string("arn:test", Deadline.after(10))
    headers = fake_aws_server.requests[0]
    assert headers["X-Amz-Target"] == "secretsmanager.GetSecretValue"
    assert headers["Content-Type"] == "application/x-amz-json-1.1"
    assert headers["X-Amz-Security-Token"] == "token"
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKID/")


def test_server_error_retried_once_then_unreachable(fake_aws_server: FakeAwsServer) -> None:
    """A 5xx response is retried once, then raises SecretStoreUnreachable."""
    fake_aws_server.status = 500
    fake_aws_server.body = b'{"__type": "InternalServiceError", "message": "boom"}'
    with pytest.raises(SecretStoreUnreachable):
        fake_client(fake_aws_server).get_secret_string("arn:test", Deadline.after(10))
    assert len(fake_aws_server.requests) == 2


def test_throttling_retried(fake_aws_server: FakeAwsServer) -> None:
    """A ThrottlingException is retried like a 5xx."""
    fake_aws_server.status = 400
    fake_aws_server.body = b'{"__type": "ThrottlingException", "message": "Rate exceeded"}'
    with pytest.raises(SecretStoreUnreachable):
        fake_client(fake_aws_server).get_secret_string("arn:test", Deadline.after(10))
    assert len(fake_aws_server.requests) == 2


def test_access_denied_not_retried(fake_aws_server: FakeAwsServer) -> None:
    """AccessDeniedException raises SecretAccessDenied after one request."""
    fake_aws_server.status = 400
    fake_aws_server.body = b'{"__type": "com.amazonaws.secretsmanager#AccessDeniedException", "Message": "no"}'
    with pytest.raises(SecretAccessDenied) as caught:
        fake_client(fake_aws_server).get_secret_string("arn:test", Deadline.after(10))
    assert caught.value.error_code == "AccessDeniedException"
    assert len(fake_aws_server.requests) == 1


def test_other_client_error_raises_request_failed(fake_aws_server: FakeAwsServer) -> None:
    """Another 4xx error type raises SecretRequestFailed."""
    fake_aws_server.status = 400
    fake_aws_server.body = b'{"__type": "InvalidRequestException", "message": "marked for deletion"}'
    with pytest.raises(SecretRequestFailed, match="InvalidRequestException: marked for deletion"):
        fake_client(fake_aws_server).get_secret_string("arn:test", Deadline.after(10))


def test_binary_secret_rejected(fake_aws_server: FakeAwsServer) -> None:
    """A secret with only SecretBinary raises SecretFormatError naming the fix."""
    fake_aws_server.body = b'{"SecretBinary": "AAEC"}'
    with pytest.raises(SecretFormatError, match="store the value as text"):
        fake_client(fake_aws_server).get_secret_string("arn:test", Deadline.after(10))


def test_timeout_raises_unreachable(fake_aws_server: FakeAwsServer) -> None:
    """A server slower than the timeout raises SecretStoreUnreachable naming the timeout."""
    fake_aws_server.delay_seconds = 1.0
    with pytest.raises(SecretStoreUnreachable, match="timed out"):
        fake_client(fake_aws_server, timeout_seconds=0.2).get_secret_string("arn:test", Deadline.after(10))


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_connection_refused_raises_unreachable() -> None:
    """Nothing listening on the endpoint raises SecretStoreUnreachable."""
    client = SecretsManagerClient(
        SecretsManagerSettings(region="us-east-1", endpoint_url=f"http://127.0.0.1:{closed_port()}"),
        credentials_provider=lambda: AwsCredentials("AKID", "secret"),
    )
    with pytest.raises(SecretStoreUnreachable, match="cannot reach"):
        client.get_secret_string("arn:test", Deadline.after(10))


def test_expired_deadline_makes_no_request(fake_aws_server: FakeAwsServer) -> None:
    """No request starts once the invocation's deadline has passed."""
    with pytest.raises(DeadlineExceeded):
        fake_client(fake_aws_server).get_secret_string("arn:test", Deadline.after(0))
    assert fake_aws_server.requests == []
