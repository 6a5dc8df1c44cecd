"""Objects the fault-injection tests work with: the stack under test, a clock the test moves, the in-process function."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pg8000.native

from local_stack.postgres import EmbeddedPostgres


def accepts_connections(server: EmbeddedPostgres) -> bool:
    """Return whether the server accepts an admin connection now."""
    try:
        server.connect_admin().close()
    except Exception:  # noqa: BLE001 - any failure means "not accepting"
        return False
    return True


@dataclass
class StackUnderTest:
    """The running local stack, with what the fault-injection tests read and break."""

    stack: Any
    postgres: EmbeddedPostgres
    # Why the stack runs src/ rather than the sam build output; empty when it runs the build.
    code_note: str = ""

    @property
    def url(self) -> str:
        return str(self.stack.webhook_url)

    @property
    def signing_secret(self) -> str:
        return str(self.stack.signing_secret)

    @property
    def database_name(self) -> str:
        return str(self.stack.database.name)

    @property
    def database_role(self) -> str:
        return str(self.stack.database.username)

    @property
    def db_secret_arn(self) -> str:
        return str(self.stack.db_secret_arn)

    @property
    def workers(self) -> int:
        return int(self.stack.workers)

    def worker_pids(self) -> set[int]:
        """Return the process ids of the function's workers (its warm execution environments)."""
        return set(self.stack.function_pool.worker_pids())

    def internal_errors(self) -> list[tuple[str, str]]:
        """Return every 500 the gateway sent (a function error, timeout or malformed response)."""
        return list(self.stack.gateway.internal_errors)

    def code_description(self) -> str:
        """Return which function code the workers run, and why."""
        description = str(self.stack.function_code.describe())
        if self.code_note:
            description = description.replace("the build check is off", self.code_note)
        return description

    @contextlib.contextmanager
    def admin_connection(self) -> Iterator[pg8000.native.Connection]:
        """Open a superuser connection to the stack's database, which works whatever the role's password is."""
        connection = self.postgres.connect_admin(self.database_name)
        try:
            yield connection
        finally:
            connection.close()

    def function_backend_pids(self) -> set[int]:
        """Return the server process ids of the function's database sessions."""
        with self.admin_connection() as connection:
            rows = connection.run(
                "SELECT pid FROM pg_stat_activity WHERE datname = :name AND application_name = 'payment-webhook'",
                name=self.database_name,
            )
        return {int(row[0]) for row in rows}


class FakeClock:
    """A monotonic clock that moves only when the test calls :meth:`advance`."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class InProcessFunction:
    """The handler in this process, with the database and secrets that ``function_env`` made."""

    env: Any
    clock: FakeClock
    connection: pg8000.native.Connection

    def event_count(self) -> int:
        return int(self.connection.run("SELECT count(*) FROM webhook_events")[0][0])
