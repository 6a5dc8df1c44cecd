"""Schema migrations and the CloudFormation custom resource that applies them."""

from __future__ import annotations

import http.server
import json
import shutil
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from webhook_test_helpers import FakeLambdaContext, open_owner_connection

from payment_webhook.dal.migrations import ADVISORY_LOCK_KEY, MIGRATIONS_DIR, apply_migrations
from payment_webhook.errors import MigrationChecksumMismatch, MigrationError, MigrationFailed
from payment_webhook.handlers import migrations as migrations_handler

FIRST_VERSION = "0001_create_webhook_tables"


@pytest.fixture
def owner_connection(database: Any) -> Iterator[Any]:
    """Return a connection to an empty database as its owner."""
    connection = open_owner_connection(database)
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture
def migrations_copy(tmp_path: Path) -> Path:
    """Return a folder holding a copy of the package's migration files."""
    folder = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, folder)
    return folder


def table_names(connection: Any) -> set[str]:
    rows = connection.run("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {row[0] for row in rows}


def test_apply_creates_tables(owner_connection: Any) -> None:
    """The first run applies every file and creates the tables the webhook writes."""
    assert apply_migrations(owner_connection) == [FIRST_VERSION]
    assert {"webhook_events", "payments", "schema_migrations"} <= table_names(owner_connection)


def test_apply_twice_is_noop(owner_connection: Any) -> None:
    """A second run applies nothing and records nothing new."""
    apply_migrations(owner_connection)
    assert apply_migrations(owner_connection) == []
    assert owner_connection.run("SELECT version FROM schema_migrations") == [[FIRST_VERSION]]


def test_applied_row_has_checksum(owner_connection: Any) -> None:
    """The recorded checksum is the file's sha256."""
    import hashlib

    apply_migrations(owner_connection)
    expected = hashlib.sha256((MIGRATIONS_DIR / f"{FIRST_VERSION}.sql").read_bytes()).hexdigest()
    assert owner_connection.run("SELECT checksum FROM schema_migrations") == [[expected]]


def test_changed_checksum_fails_naming_file(owner_connection: Any, migrations_copy: Path) -> None:
    """Editing an applied file stops the next run with an error naming that file."""
    apply_migrations(owner_connection, migrations_copy)
    applied_file = migrations_copy / f"{FIRST_VERSION}.sql"
    applied_file.write_text(applied_file.read_text() + "\n-- edited\n")
    with pytest.raises(MigrationChecksumMismatch, match=f"{FIRST_VERSION}.sql"):
        apply_migrations(owner_connection, migrations_copy)


def test_changed_checksum_applies_nothing_new(owner_connection: Any, migrations_copy: Path) -> None:
    """With a changed file, later files are not applied either."""
    apply_migrations(owner_connection, migrations_copy)
    applied_file = migrations_copy / f"{FIRST_VERSION}.sql"
    applied_file.write_text(applied_file.read_text() + "\n-- edited\n")
    (migrations_copy / "0002_add_note.sql").write_text("ALTER TABLE payments ADD COLUMN note text;")
    with pytest.raises(MigrationChecksumMismatch):
        apply_migrations(owner_connection, migrations_copy)
    assert owner_connection.run("SELECT count(*) FROM schema_migrations") == [[1]]


def test_new_file_applied_after_existing(owner_connection: Any, migrations_copy: Path) -> None:
    """A file added later is applied on the next run, alone."""
    apply_migrations(owner_connection, migrations_copy)
    (migrations_copy / "0002_add_note.sql").write_text("ALTER TABLE payments ADD COLUMN note text;")
    assert apply_migrations(owner_connection, migrations_copy) == ["0002_add_note"]


def test_failed_migration_rolled_back(owner_connection: Any, migrations_copy: Path) -> None:
    """A failing file leaves neither its objects nor its row, and the error names it."""
    (migrations_copy / "0002_broken.sql").write_text("CREATE TABLE half_done (id int);\nSELECT * FROM no_such_table;")
    with pytest.raises(MigrationFailed, match="0002_broken.sql"):
        apply_migrations(owner_connection, migrations_copy)
    assert "half_done" not in table_names(owner_connection)
    assert owner_connection.run("SELECT version FROM schema_migrations") == [[FIRST_VERSION]]


def test_misnamed_file_rejected(owner_connection: Any, migrations_copy: Path) -> None:
    """A file not named NNNN_words.sql is an error naming it."""
    (migrations_copy / "add-index.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="add-index.sql"):
        apply_migrations(owner_connection, migrations_copy)


def test_duplicate_number_rejected(owner_connection: Any, migrations_copy: Path) -> None:
    """Two files with the same number are an error naming both."""
    (migrations_copy / "0001_other.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="share the number 0001"):
        apply_migrations(owner_connection, migrations_copy)


def test_concurrent_runners_apply_once(database: Any) -> None:
    """Two runners started together apply the files once between them."""
    connections = [open_owner_connection(database) for _ in range(2)]
    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = apply_migrations(connections[index])
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results[index] = exc

    threads = [threading.Thread(target=run, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for connection in connections:
        connection.close()
    assert sorted(results, key=len) == [[], [FIRST_VERSION]]


@dataclass
class ResponseServer:
    """A local stand-in for CloudFormation's pre-signed S3 response URL."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)

    def only_response(self) -> dict[str, Any]:
        assert len(self.requests) == 1
        return json.loads(self.requests[0]["body"])


@pytest.fixture
def response_server() -> Iterator[ResponseServer]:
    """Start an HTTP server on 127.0.0.1 that records PUT requests; stop it after the test."""
    state = ResponseServer()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_PUT(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.requests.append({"path": self.path, "headers": dict(self.headers.items()), "body": body})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature fixed by the base class
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/cloudformation-response?X-Amz-Signature=presigned"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def custom_resource_event(request_type: str, response_url: str, **fields: Any) -> dict[str, Any]:
    """Return a CloudFormation custom resource request."""
    return {
        "RequestType": request_type,
        "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:migrations",
        "ResponseURL": response_url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/payment-webhook-dev-abcd/guid",
        "RequestId": f"request-{request_type.lower()}",
        "LogicalResourceId": "DatabaseMigrations",
        "ResourceType": "Custom::DatabaseMigrations",
        "ResourceProperties": {"ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:migrations"},
        **fields,
    }


def test_create_applies_and_puts_success(function_env: Any, response_server: ResponseServer) -> None:
    """Create applies the migrations and PUTs SUCCESS with the applied versions."""
    migrations_handler.lambda_handler(custom_resource_event("Create", response_server.url), FakeLambdaContext(60_000))
    response = response_server.only_response()
    assert response["Status"] == "SUCCESS"
    assert response["Data"]["AppliedVersions"] == FIRST_VERSION
    assert response["PhysicalResourceId"] == migrations_handler.PHYSICAL_RESOURCE_ID
    assert response["RequestId"] == "request-create"
    assert response["LogicalResourceId"] == "DatabaseMigrations"


def test_create_response_sent_to_presigned_path(function_env: Any, response_server: ResponseServer) -> None:
    """The response goes to the URL's path and query with an empty content type, as S3 pre-signing needs."""
    migrations_handler.lambda_handler(custom_resource_event("Create", response_server.url), FakeLambdaContext(60_000))
    request = response_server.requests[0]
    assert request["path"] == "/cloudformation-response?X-Amz-Signature=presigned"
    assert request["headers"].get("Content-Type") == ""


def test_update_applies_and_keeps_physical_id(function_env: Any, response_server: ResponseServer) -> None:
    """Update applies pending migrations and returns the PhysicalResourceId it was given."""
    event = custom_resource_event("Update", response_server.url, PhysicalResourceId="existing-id")
    migrations_handler.lambda_handler(event, FakeLambdaContext(60_000))
    response = response_server.only_response()
    assert response["Status"] == "SUCCESS"
    assert response["PhysicalResourceId"] == "existing-id"


def test_update_after_create_applies_nothing(function_env: Any, response_server: ResponseServer) -> None:
    """An Update with no new files succeeds with an empty version list."""
    migrations_handler.lambda_handler(custom_resource_event("Create", response_server.url), FakeLambdaContext(60_000))
    event = custom_resource_event(
        "Update", response_server.url, PhysicalResourceId=migrations_handler.PHYSICAL_RESOURCE_ID
    )
    migrations_handler.lambda_handler(event, FakeLambdaContext(60_000))
    last = json.loads(response_server.requests[-1]["body"])
    assert last["Status"] == "SUCCESS"
    assert last["Data"]["AppliedVersions"] == ""


def test_delete_succeeds_without_database(
    function_env: Any, response_server: ResponseServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Delete PUTs SUCCESS without connecting, so it works even when the database is gone."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        monkeypatch.setenv("DB_PORT", str(probe.getsockname()[1]))
    event = custom_resource_event("Delete", response_server.url, PhysicalResourceId="existing-id")
    migrations_handler.lambda_handler(event, FakeLambdaContext(60_000))
    response = response_server.only_response()
    assert response["Status"] == "SUCCESS"
    assert response["PhysicalResourceId"] == "existing-id"


def test_delete_keeps_data(function_env: Any, response_server: ResponseServer) -> None:
    """Tables and rows survive a Delete."""
    migrations_handler.lambda_handler(custom_resource_event("Create", response_server.url), FakeLambdaContext(60_000))
    event = custom_resource_event("Delete", response_server.url, PhysicalResourceId="existing-id")
    migrations_handler.lambda_handler(event, FakeLambdaContext(60_000))
    connection = open_owner_connection(function_env.database)
    try:
        assert {"webhook_events", "payments"} <= table_names(connection)
    finally:
        connection.close()


def test_exception_still_puts_failed(
    function_env: Any, response_server: ResponseServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure PUTs FAILED with a reason that names the secret and contains no password."""
    missing_arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf"
    monkeypatch.setenv("DB_SECRET_ARN", missing_arn)
    migrations_handler.lambda_handler(custom_resource_event("Create", response_server.url), FakeLambdaContext(60_000))
    response = response_server.only_response()
    assert response["Status"] == "FAILED"
    assert missing_arn in response["Reason"]
    assert function_env.database.password not in json.dumps(response)


def test_wrong_password_failed_reason_has_no_secret(function_env: Any, response_server: ResponseServer) -> None:
    """A rejected password is reported by user name, never by value."""
    function_env.secrets_manager.put_secret_value(
        function_env.db_secret_arn, {"username": function_env.database.username, "password": "wrong-password-value"}
    )
    migrations_handler.lambda_handler(custom_resource_event("Create", response_server.url), FakeLambdaContext(60_000))
    response = response_server.only_response()
    assert response["Status"] == "FAILED"
    assert "rejected the credentials" in response["Reason"]
    assert "wrong-password-value" not in response["Reason"]


def test_unknown_request_type_puts_failed(function_env: Any, response_server: ResponseServer) -> None:
    """An unknown RequestType gets a FAILED response, not silence."""
    migrations_handler.lambda_handler(custom_resource_event("Rollback", response_server.url), FakeLambdaContext(60_000))
    assert response_server.only_response()["Status"] == "FAILED"


def test_configuration_error_puts_failed(
    function_env: Any, response_server: ResponseServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing variable gets a FAILED response naming the variable."""
    monkeypatch.delenv("DB_HOST")
    migrations_handler.lambda_handler(custom_resource_event("Create", response_server.url), FakeLambdaContext(60_000))
    response = response_server.only_response()
    assert response["Status"] == "FAILED"
    assert "DB_HOST is not set" in response["Reason"]


def test_responds_before_lambda_timeout(
    function_env: Any, response_server: ResponseServer, owner_connection: Any
) -> None:
    """Migrations blocked past the time left get a FAILED response before the Lambda timeout."""
    owner_connection.run("SELECT pg_advisory_lock(CAST(:key AS bigint))", key=ADVISORY_LOCK_KEY)
    try:
        remaining = int((migrations_handler.RESPONSE_RESERVE_SECONDS + 1.0) * 1000)
        migrations_handler.lambda_handler(
            custom_resource_event("Create", response_server.url), FakeLambdaContext(remaining)
        )
    finally:
        owner_connection.run("SELECT pg_advisory_unlock(CAST(:key AS bigint))", key=ADVISORY_LOCK_KEY)
        for thread in threading.enumerate():
            if thread.name == "apply-migrations":
                thread.join(timeout=30)
    response = response_server.only_response()
    assert response["Status"] == "FAILED"
    assert "did not finish" in response["Reason"]


def test_no_time_left_puts_failed(function_env: Any, response_server: ResponseServer) -> None:
    """When the context leaves no time for the work, FAILED is sent at once."""
    migrations_handler.lambda_handler(custom_resource_event("Create", response_server.url), FakeLambdaContext(1000))
    assert response_server.only_response()["Status"] == "FAILED"


def test_missing_response_url_does_not_raise(function_env: Any) -> None:
    """Without a ResponseURL the handler returns its response instead of raising."""
    event = custom_resource_event("Delete", "")
    assert migrations_handler.lambda_handler(event, FakeLambdaContext(60_000))["Status"] == "SUCCESS"


def test_unreachable_response_url_does_not_raise(function_env: Any) -> None:
    """A response URL with no listener is logged, and the handler still returns."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/response"
    result = migrations_handler.lambda_handler(custom_resource_event("Delete", url), FakeLambdaContext(60_000))
    assert result["Status"] == "SUCCESS"
