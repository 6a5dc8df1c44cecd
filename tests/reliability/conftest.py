"""Fixtures of the fault-injection tests: a PostgreSQL server these tests may stop, and a local stack on it.

- ``fault_postgres``: an embedded PostgreSQL 16 started for this tier alone, so stopping,
  restarting and terminating its sessions never disturbs another tier's server (nor the
  server that ``DATABASE_URL`` names).
- ``stack``: the local stack (gateway, four warm function workers, moto, database) on
  that server, shared by the HTTP tests of the session. Each test writes events under
  its own id prefix.
- ``secret_reads``: counts GetSecretValue calls per secret as moto's server receives them,
  so the tests see the function's secret reads without patching the function.
- ``in_process``: the handler in this process on a fresh migrated database, built with a
  clock the test moves (the signing secret's re-read interval).
- ``record``: stores a scenario's figures for ``docs/RELIABILITY.md``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pg8000.native
import pytest

from local_stack.postgres import EmbeddedPostgres
from local_stack.runtime import first_stale_file
from tests.reliability.figures import record_figures
from tests.reliability.harness import FakeClock, InProcessFunction, StackUnderTest, accepts_connections

logger = logging.getLogger(__name__)

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
BUILD_DIR = REPOSITORY_ROOT / ".aws-sam" / "build"
SOURCE_DIR = REPOSITORY_ROOT / "src"
FUNCTION_LOGICAL_ID = "PaymentWebhookFunction"
STACK_WORKERS = 4


@pytest.fixture(scope="session")
def fault_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """Start a PostgreSQL server that only this tier uses, and delete it at the end."""
    server = EmbeddedPostgres(tmp_path_factory.mktemp("fault-postgres") / "data")
    server.start()
    try:
        yield server
    finally:
        server.remove()


def function_build_dir() -> tuple[Path | None, str]:
    """Return the ``sam build`` output when it matches src/, else None (the stack then runs src/), and why."""
    package = BUILD_DIR / FUNCTION_LOGICAL_ID
    if not package.is_dir():
        return None, f"{package.relative_to(REPOSITORY_ROOT)} is missing"
    stale = first_stale_file(package, SOURCE_DIR)
    if stale is not None:
        return None, f"{package.relative_to(REPOSITORY_ROOT)} is older than src/ ({stale} differs)"
    return BUILD_DIR, ""


@pytest.fixture(scope="session")
def _local_stack(
    fault_postgres: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Any, str]]:
    from local_stack.stack import LocalStack

    build_dir, reason = function_build_dir()
    if build_dir is None:
        logger.info("the local stack runs the sources in src/: %s", reason)
    stack = LocalStack(
        work_dir=tmp_path_factory.mktemp("reliability-stack"),
        port=0,
        workers=STACK_WORKERS,
        build_dir=build_dir,
        reporter=logger.info,
        postgres_server=fault_postgres,
    )
    stack.start()
    try:
        yield stack, reason
    finally:
        if not accepts_connections(fault_postgres):
            fault_postgres.start()
        stack.stop()


@pytest.fixture
def stack(_local_stack: tuple[Any, str], fault_postgres: EmbeddedPostgres) -> StackUnderTest:
    """Return the local stack, restarting its PostgreSQL first if an earlier test left it stopped."""
    if not accepts_connections(fault_postgres):
        fault_postgres.start()
    local_stack, code_note = _local_stack
    return StackUnderTest(local_stack, fault_postgres, code_note)


@pytest.fixture
def secret_reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count GetSecretValue requests per secret id as moto's server handles them."""
    from moto.secretsmanager.models import SecretsManagerBackend

    reads: Counter[str] = Counter()
    original = SecretsManagerBackend.get_secret_value

    def counting(self: Any, secret_id: str, *arguments: Any, **keywords: Any) -> Any:
        reads[secret_id] += 1
        return original(self, secret_id, *arguments, **keywords)

    monkeypatch.setattr(SecretsManagerBackend, "get_secret_value", counting)
    return reads


@pytest.fixture
def in_process(function_env: Any) -> Iterator[InProcessFunction]:
    """Apply the migrations and build the handler's dependencies with a clock the test moves."""
    from payment_webhook.config import load_webhook_settings
    from payment_webhook.dal.migrations import apply_migrations
    from payment_webhook.dependencies import build_webhook_dependencies, replace_webhook_dependencies

    database = function_env.database
    connection = pg8000.native.Connection(
        user=database.username,
        password=database.password,
        host=database.host,
        port=database.port,
        database=database.name,
        timeout=10,
    )
    apply_migrations(connection)
    clock = FakeClock()
    replace_webhook_dependencies(build_webhook_dependencies(load_webhook_settings(), clock=clock))
    try:
        yield InProcessFunction(env=function_env, clock=clock, connection=connection)
    finally:
        replace_webhook_dependencies(None)
        connection.close()


CALL_REPORT = pytest.StashKey[pytest.TestReport]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Keep the report of each test's call phase, so ``record`` can write whether the test passed."""
    report = yield
    if report.when == "call":
        item.stash[CALL_REPORT] = report
    return report


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Iterator[Callable[[str, dict[str, Any]], None]]:
    """Return a function that keeps a scenario's figures; they are written with the test's result after it ends."""
    pending: dict[str, dict[str, Any]] = {}
    yield pending.__setitem__
    report = request.node.stash.get(CALL_REPORT, None)
    for scenario, figures in pending.items():
        record_figures(request.config, scenario, figures, passed=report is not None and report.passed)
