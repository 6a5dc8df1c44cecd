"""The local stack: the Lambda-like runtime, the choice of code, the replay and the whole stack.

The stack tests start a real LocalStack (embedded PostgreSQL in a temporary folder,
moto's Secrets Manager, the function's workers and the gateway) on free loopback ports.
They run the sources in ``src/``; tests/unit/test_built_package.py checks the build.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from local_stack.postgres import EmbeddedPostgres
from local_stack.replay import ReplayRow, format_table, replay_events
from local_stack.runtime import (
    ELF_MACHINE_BY_ARCHITECTURE,
    FunctionCode,
    FunctionError,
    FunctionPool,
    FunctionSettings,
    extension_tag,
    host_architecture,
    read_elf_machine,
    select_function_code,
)
from local_stack.signing import signature_header
from local_stack.stack import PROJECT_ROOT, TEMPLATE_PATH, LocalStack, LocalStackError

EVENTS_DIR = PROJECT_ROOT / "events"

PROBE_HANDLER = textwrap.dedent(
    '''
    """Test handler: return the worker process's state, environment and context."""
    import os
    import sys
    import time

    CALLS = 0


    def lambda_handler(event, context):
        global CALLS
        CALLS += 1
        if event.get("sleep_seconds"):
            time.sleep(event["sleep_seconds"])
        return {
            "calls": CALLS,
            "pid": os.getpid(),
            "sys_path": sys.path,
            "environment": dict(os.environ),
            "context": {
                "aws_request_id": context.aws_request_id,
                "function_name": context.function_name,
                "function_version": context.function_version,
                "memory_limit_in_mb": context.memory_limit_in_mb,
                "invoked_function_arn": context.invoked_function_arn,
                "remaining_ms": context.get_remaining_time_in_millis(),
            },
        }
    '''
)


def _write_probe(folder: Path) -> FunctionCode:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "probe_handler.py").write_text(PROBE_HANDLER)
    return FunctionCode(code_dirs=(folder,), origin="build", reason="test handler")


@pytest.fixture(scope="module")
def probe_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FunctionPool]:
    """One warm worker of the probe handler."""
    code = _write_probe(tmp_path_factory.mktemp("probe"))
    settings = FunctionSettings(handler="probe_handler.lambda_handler", timeout_seconds=10, memory_mb=512)
    pool = FunctionPool(code, settings, {"FUNCTION_VARIABLE": "set by the template"}, size=1)
    pool.start()
    try:
        yield pool
    finally:
        pool.stop()


# --- runtime -------------------------------------------------------------------------


def test_worker_keeps_module_state(probe_pool: FunctionPool) -> None:
    """A warm worker imports the handler once: module state survives between invocations."""
    first = probe_pool.invoke({}).result
    second = probe_pool.invoke({}).result

    assert second["pid"] == first["pid"]
    assert second["calls"] == first["calls"] + 1


def test_worker_context_fields(probe_pool: FunctionPool) -> None:
    """The handler gets a Lambda context with the function's name, memory, ARN and time left."""
    context = probe_pool.invoke({}).result["context"]

    assert context["function_name"] == "payment-webhook-dev-local"
    assert context["function_version"] == "$LATEST"
    assert context["memory_limit_in_mb"] == "512"
    assert context["invoked_function_arn"] == probe_pool.settings.function_arn
    assert 0 < context["remaining_ms"] <= 10_000
    assert len(context["aws_request_id"]) == 36


def test_worker_request_ids_unique(probe_pool: FunctionPool) -> None:
    """Every invocation has its own aws_request_id."""
    first = probe_pool.invoke({})
    second = probe_pool.invoke({})

    assert first.request_id != second.request_id
    assert first.result["context"]["aws_request_id"] == first.request_id


def test_worker_environment_is_lambdas(probe_pool: FunctionPool) -> None:
    """Workers see Lambda's variables and the function's, not this process's environment."""
    environment = probe_pool.invoke({}, trace_id="Root=1-00000000-000000000000000000000001").result["environment"]
    set_on_purpose = {"PATH", "LANG", "TZ", "AWS_REGION", "AWS_DEFAULT_REGION"}

    assert environment["FUNCTION_VARIABLE"] == "set by the template"
    assert environment["AWS_LAMBDA_FUNCTION_NAME"] == "payment-webhook-dev-local"
    assert environment["AWS_EXECUTION_ENV"] == "AWS_Lambda_python3.13"
    assert environment["_X_AMZN_TRACE_ID"] == "Root=1-00000000-000000000000000000000001"
    assert [name for name in environment if name in os.environ and name not in set_on_purpose] == []


def test_worker_path_holds_code_and_stdlib_only(probe_pool: FunctionPool) -> None:
    """The worker's sys.path starts with the code folder and has no site-packages."""
    sys_path = probe_pool.invoke({}).result["sys_path"]

    assert sys_path[0] == str(probe_pool.code.task_root)
    assert [entry for entry in sys_path if "site-packages" in entry] == []


def test_worker_timeout_replaced(tmp_path: Path) -> None:
    """An invocation past the timeout fails as Sandbox.Timedout and a new worker takes over."""
    code = _write_probe(tmp_path / "code")
    settings = FunctionSettings(handler="probe_handler.lambda_handler", timeout_seconds=1)
    pool = FunctionPool(code, settings, {}, size=1)
    pool.start()
    try:
        slow = pool.invoke({"sleep_seconds": 5})
        after = pool.invoke({})
    finally:
        pool.stop()

    assert slow.error is not None
    assert slow.error.error_type == "Sandbox.Timedout"
    assert after.error is None
    assert after.result["calls"] == 1


def test_worker_import_error_fails_start(tmp_path: Path) -> None:
    """A handler that cannot be imported fails the pool's start with the import error."""
    code = _write_probe(tmp_path / "code")
    settings = FunctionSettings(handler="missing_module.lambda_handler")
    pool = FunctionPool(code, settings, {}, size=1)

    with pytest.raises(FunctionError, match="Runtime.ImportModuleError"):
        pool.start()


def test_pool_stop_ends_workers(tmp_path: Path) -> None:
    """stop() ends every worker process."""
    code = _write_probe(tmp_path / "code")
    pool = FunctionPool(code, FunctionSettings(handler="probe_handler.lambda_handler"), {}, size=2)
    pool.start()
    pids = pool.worker_pids()

    pool.stop()

    assert len(pids) == 2
    assert [pid for pid in pids if _process_exists(pid)] == []


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --- which code runs -----------------------------------------------------------------


def _make_sources(root: Path) -> Path:
    source_dir = root / "src"
    (source_dir / "payment_webhook").mkdir(parents=True)
    (source_dir / "payment_webhook" / "__init__.py").write_text("")
    (source_dir / "requirements.txt").write_text("pg8000==1.31.6\n")
    return source_dir


def _make_build(root: Path, source_dir: Path) -> Path:
    build_dir = root / "build"
    shutil.copytree(source_dir, build_dir / "PaymentWebhookFunction")
    return build_dir


def _fake_elf(path: Path, machine: int) -> None:
    """Write an ELF header (64-bit, little-endian) with the given e_machine."""
    header = b"\x7fELF" + bytes([2, 1, 1]) + bytes(9) + (3).to_bytes(2, "little") + machine.to_bytes(2, "little")
    path.write_bytes(header + bytes(44))


def test_elf_reader_reads_host_interpreter() -> None:
    """read_elf_machine gives this host's architecture for the running interpreter."""
    machine = read_elf_machine(Path(os.path.realpath(sys.executable)))

    assert machine == ELF_MACHINE_BY_ARCHITECTURE[host_architecture()]


@pytest.mark.parametrize(
    ("file_name", "tag"),
    [
        ("_speedups.cpython-313-aarch64-linux-gnu.so", "cpython-313-aarch64-linux-gnu"),
        ("_speedups.abi3.so", "abi3"),
        ("_speedups.so", None),
        ("libssl-1a2b3c.so.3", None),
    ],
)
def test_extension_tag_reader(file_name: str, tag: str | None) -> None:
    """extension_tag reads the ABI tag that wheels put in extension file names."""
    assert extension_tag(Path(file_name)) == tag


def test_select_code_missing_build(tmp_path: Path) -> None:
    """A missing build raises an error that names `make build`."""
    source_dir = _make_sources(tmp_path)

    with pytest.raises(FunctionError, match="run `make build` first"):
        select_function_code(tmp_path / "no-build", source_dir)


def test_select_code_stale_build(tmp_path: Path) -> None:
    """A build whose sources differ from src/ raises an error that names the file and `make build`."""
    source_dir = _make_sources(tmp_path)
    build_dir = _make_build(tmp_path, source_dir)
    (source_dir / "payment_webhook" / "__init__.py").write_text("CHANGED = True\n")

    with pytest.raises(FunctionError, match=r"payment_webhook/__init__\.py differs"):
        select_function_code(build_dir, source_dir)


def test_select_code_pure_build_runs(tmp_path: Path) -> None:
    """A build without compiled files runs as it is."""
    source_dir = _make_sources(tmp_path)
    build_dir = _make_build(tmp_path, source_dir)

    code = select_function_code(build_dir, source_dir)

    assert code.origin == "build"
    assert code.code_dirs == ((build_dir / "PaymentWebhookFunction").resolve(),)
    assert code.site_dirs == ()


def test_select_code_host_extension_runs(tmp_path: Path) -> None:
    """A build whose extensions match this host and interpreter runs as it is."""
    source_dir = _make_sources(tmp_path)
    build_dir = _make_build(tmp_path, source_dir)
    host_machine = ELF_MACHINE_BY_ARCHITECTURE[host_architecture()]
    _fake_elf(build_dir / "PaymentWebhookFunction" / "_speedups.abi3.so", host_machine)

    code = select_function_code(build_dir, source_dir)

    assert code.origin == "build"


def test_select_code_foreign_extension_runs_sources(tmp_path: Path) -> None:
    """A build with an extension for another architecture falls back to src/ and gives the cause."""
    source_dir = _make_sources(tmp_path)
    build_dir = _make_build(tmp_path, source_dir)
    foreign = "arm64" if host_architecture() == "x86_64" else "x86_64"
    extension = build_dir / "PaymentWebhookFunction" / "_speedups.cpython-313-aarch64-linux-gnu.so"
    _fake_elf(extension, ELF_MACHINE_BY_ARCHITECTURE[foreign])

    code = select_function_code(build_dir, source_dir)

    assert code.origin == "source"
    assert code.code_dirs == (source_dir.resolve(),)
    assert f"built for {foreign}" in code.reason
    assert "_speedups.cpython-313-aarch64-linux-gnu.so" in code.reason


def test_select_code_without_build_check(tmp_path: Path) -> None:
    """build_dir None runs the sources with the virtual environment's site-packages."""
    source_dir = _make_sources(tmp_path)

    code = select_function_code(None, source_dir)

    assert code.origin == "source"
    assert any("site-packages" in str(path) for path in code.site_dirs)


def test_settings_read_from_template() -> None:
    """The function's handler, runtime, architecture, timeout and memory come from template.yaml."""
    settings = FunctionSettings.from_template(TEMPLATE_PATH)

    assert settings.handler == "payment_webhook.handlers.webhook.lambda_handler"
    assert settings.runtime == "python3.13"
    assert settings.architecture == "arm64"
    assert settings.timeout_seconds == 10
    assert settings.memory_mb == 512


# --- replay table --------------------------------------------------------------------


def test_replay_table_marks_mismatch() -> None:
    """A row whose response differs ends in MISMATCH; a matching row ends in ok."""
    rows = [
        ReplayRow("stored.json", "fresh", "200 stored", "200 stored", matches=True),
        ReplayRow("duplicate.json", "fresh", "200 duplicate", "200 stored", matches=False),
    ]

    lines = format_table(rows)

    assert lines[1].endswith("ok")
    assert lines[2].endswith("MISMATCH")
    assert lines[0].split() == ["event", "signature", "expected", "actual", "result"]


# --- the stack -----------------------------------------------------------------------


def _stop_leftover_postgres(work_dir: Path) -> list[Path]:
    """Stop every embedded PostgreSQL still running under ``work_dir``; return their data folders."""
    leftovers = [pid_file.parent.parent for pid_file in work_dir.glob("**/pgdata/postmaster.pid")]
    for data_dir in leftovers:
        EmbeddedPostgres(data_dir).stop(mode="immediate")
    return leftovers


@pytest.fixture
def work_dir(tmp_path: Path) -> Iterator[Path]:
    """A work folder for one stack; a PostgreSQL the stack left running there fails the test."""
    yield tmp_path
    leftovers = _stop_leftover_postgres(tmp_path)
    assert leftovers == [], "the stack left PostgreSQL running (stopped by the test now)"


@pytest.fixture(scope="module")
def stack_report() -> list[str]:
    """The lines the module's stack reports."""
    return []


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, stack_report: list[str]) -> Iterator[LocalStack]:
    """A running local stack with its own embedded PostgreSQL in a temporary folder."""
    folder = tmp_path_factory.mktemp("local-stack")
    local = LocalStack(work_dir=folder, port=0, workers=2, build_dir=None, reporter=stack_report.append)
    local.start()
    try:
        yield local
    finally:
        local.stop()
        leftovers = _stop_leftover_postgres(folder)
    assert leftovers == [], "the stack left PostgreSQL running (stopped by the test now)"


def _template_output_keys() -> set[str]:
    from samtranslator.yaml_helper import yaml_parse

    return set(yaml_parse(TEMPLATE_PATH.read_text())["Outputs"])


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("POST", parts.path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _stripe_event(event_id: str) -> bytes:
    event = {
        "id": event_id,
        "object": "event",
        "type": "payment_intent.created",
        "created": int(time.time()),
        "livemode": False,
        "data": {
            "object": {
                "id": "pi_" + event_id,
                "object": "payment_intent",
                "amount": 1999,
                "currency": "eur",
                "status": "requires_payment_method",
                "customer": "cus_local_test",
            }
        },
    }
    return json.dumps(event).encode()


def test_stack_outputs_file_shape(stack: LocalStack) -> None:
    """The Outputs file is a describe-stacks list of OutputKey and OutputValue strings."""
    document = json.loads(stack.outputs_file.read_text())

    assert isinstance(document, list)
    for item in document:
        assert set(item) == {"OutputKey", "OutputValue"}
        assert isinstance(item["OutputKey"], str)
        assert isinstance(item["OutputValue"], str)
    assert {item["OutputKey"]: item["OutputValue"] for item in document} == stack.outputs


def test_stack_outputs_keys_match_template(stack: LocalStack) -> None:
    """The local Outputs are the template's, without the prod-only NAT, plus AwsEndpointUrl."""
    expected = (_template_output_keys() - {"NatGatewayId"}) | {"AwsEndpointUrl"}

    assert set(stack.outputs) == expected


def test_stack_outputs_values(stack: LocalStack) -> None:
    """Outputs point at the local parts; those without a local counterpart start with local-."""
    outputs = stack.outputs

    assert outputs["WebhookUrl"] == f"http://127.0.0.1:{stack.gateway.port}/webhooks/payments"
    assert outputs["DbEndpointAddress"] == "127.0.0.1"
    assert outputs["DbEndpointPort"] == str(stack.postgres.port)
    assert outputs["DbName"] == "payments"
    assert outputs["Environment"] == "dev"
    assert outputs["EnvironmentSuffix"] == "local"
    assert outputs["AwsEndpointUrl"] == stack.secrets.endpoint_url
    for key in ("VpcId", "FunctionSecurityGroupId", "DatabaseSecurityGroupId", "KmsKeyArn"):
        assert outputs[key].startswith("local-"), key
    assert all(subnet.startswith("local-") for subnet in outputs["PrivateSubnetIds"].split(","))


def test_stack_signing_secret_readable_through_outputs(stack: LocalStack) -> None:
    """The signing secret is in moto at WebhookSigningSecretArn, reachable through AwsEndpointUrl."""
    import boto3

    client = boto3.client(
        "secretsmanager",
        region_name="us-east-1",
        endpoint_url=stack.outputs["AwsEndpointUrl"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    value = client.get_secret_value(SecretId=stack.outputs["WebhookSigningSecretArn"])["SecretString"]

    assert value == stack.signing_secret
    assert value.startswith("whsec_")


def test_stack_database_secret_is_rds_shaped(stack: LocalStack) -> None:
    """The database secret contains the JSON object RDS writes, with the owner's credentials."""
    value = json.loads(stack.secrets.get_secret_string(stack.outputs["DbMasterSecretArn"]))

    assert value == {"username": stack.database.username, "password": stack.database.password}


def test_stack_signed_request_stored_then_duplicate(stack: LocalStack) -> None:
    """A signed event is stored, and the same event again is a duplicate."""
    event_id = f"evt_local_stack_{time.time_ns()}"
    body = _stripe_event(event_id)
    headers = {"Content-Type": "application/json", "Stripe-Signature": signature_header(body, stack.signing_secret)}

    first = _post(stack.webhook_url, body, headers)
    second = _post(stack.webhook_url, body, headers)

    assert first == (HTTPStatus.OK, {"status": "stored", "event_id": event_id})
    assert second == (HTTPStatus.OK, {"status": "duplicate", "event_id": event_id})


def test_stack_unsigned_request_rejected(stack: LocalStack) -> None:
    """A request without a signature gets the function's 400, not a gateway error."""
    status, body = _post(stack.webhook_url, _stripe_event("evt_unsigned"), {"Content-Type": "application/json"})

    assert status == HTTPStatus.BAD_REQUEST
    assert body == {"error": "missing_signature"}


def test_stack_replays_sample_events(stack: LocalStack) -> None:
    """Every event in events/ gets the response the manifest expects."""
    rows = replay_events(EVENTS_DIR, stack.gateway.base_url, stack.signing_secret)

    assert [row for row in rows if not row.matches] == []
    assert len(rows) > 0


def test_stack_no_internal_server_errors(stack: LocalStack) -> None:
    """Nothing sent to the stack so far made the gateway respond 500."""
    _post(stack.webhook_url, b"\x00\xff not json", {"Content-Type": "application/octet-stream"})

    assert stack.gateway.internal_errors == []


def test_stack_reports_each_step(stack: LocalStack, stack_report: list[str]) -> None:
    """Each step reports a line when it starts and one with its duration when it ends."""
    for step in ("postgres", "database", "secrets", "code", "migrations", "function", "gateway", "outputs"):
        step_lines = [line for line in stack_report if line.startswith(f"{step}: ")]
        assert not step_lines[0].endswith(" s)"), step
        assert [line for line in step_lines[1:] if line.endswith(" s)")] != [], step


def test_stack_second_on_same_work_dir_rejected(stack: LocalStack) -> None:
    """A second stack on the same work folder fails at once and names the running one."""
    second = LocalStack(work_dir=stack.work_dir, port=0, build_dir=None, reporter=lambda line: None)

    with pytest.raises(LocalStackError, match="another local stack"):
        second.start()
    assert stack.outputs_file.exists()


def _refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def test_stack_stop_leaves_nothing_running(work_dir: Path) -> None:
    """stop() closes every port, ends the workers and PostgreSQL, and removes the Outputs file."""
    local = LocalStack(work_dir=work_dir, port=0, workers=2, build_dir=None, reporter=lambda line: None)
    local.start()
    ports = {
        "gateway": local.gateway.port,
        "postgres": local.postgres.port,
        "secrets": local.secrets.port,
    }
    worker_pids = local.function_pool.worker_pids()
    pgdata = local.postgres.pgdata

    local.stop()
    local.stop()

    assert [name for name, port in ports.items() if not _refuses_connections(port)] == []
    assert [pid for pid in worker_pids if _process_exists(pid)] == []
    assert not (pgdata / "postmaster.pid").exists()
    assert not local.outputs_file.exists()


def test_stack_port_in_use_names_fix(work_dir: Path) -> None:
    """A busy port fails the gateway step with the LOCAL_PORT to use, and stops what started."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        local = LocalStack(work_dir=work_dir, port=port, workers=1, build_dir=None, reporter=lambda line: None)

        with pytest.raises(LocalStackError) as failure:
            local.start()

    assert failure.value.step == "gateway"
    assert f"port {port} is in use: run with LOCAL_PORT={port + 1}" in failure.value.message
    assert _refuses_connections(local.postgres.port)


# --- python -m local_stack -----------------------------------------------------------


COMMAND_TIMEOUT_SECONDS = 180


def _start_command(work_dir: Path, *extra: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "local_stack", "--port", "0", "--workers", "2", "--work-dir", str(work_dir)]
    return subprocess.Popen(
        [*command, *extra], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _finish(process: subprocess.Popen[str], timeout: float = COMMAND_TIMEOUT_SECONDS) -> str:
    """Wait for the command; past the timeout, interrupt it as Ctrl-C would, so it still stops PostgreSQL."""
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
        pytest.fail(f"python -m local_stack did not finish within {timeout} s:\n{output}")
    return output


@pytest.mark.slow
def test_command_no_serve_replays_and_exits(work_dir: Path) -> None:
    """--no-serve prints the replay table and exits 0 when every response matches."""
    process = _start_command(work_dir, "--no-serve", "--no-build-check")
    output = _finish(process)

    assert process.returncode == 0, output
    assert "replay: all" in output
    assert "MISMATCH" not in output
    assert "postgres: stopped" in output


@pytest.mark.slow
def test_command_sigint_stops_everything(work_dir: Path) -> None:
    """SIGINT while serving stops the gateway, the workers and PostgreSQL, then exits 0."""
    process = _start_command(work_dir, "--no-build-check")
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("serving: ") or "failed:" in line:
            break
    outputs_file = work_dir / "stack-outputs.json"
    outputs = {item["OutputKey"]: item["OutputValue"] for item in json.loads(outputs_file.read_text())}

    process.send_signal(signal.SIGINT)
    rest = _finish(process, timeout=60)

    assert process.returncode == 0, "".join(lines) + rest
    assert "postgres: stopped" in rest
    assert _refuses_connections(urlsplit(outputs["WebhookUrl"]).port)
    assert _refuses_connections(int(outputs["DbEndpointPort"]))
    assert not outputs_file.exists()
