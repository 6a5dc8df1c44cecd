"""The servers the benchmarks run against: the local stack's PostgreSQL and Secrets Manager on 127.0.0.1.

``BenchEnvironment`` starts the local stack in its own folder (``.local/bench`` by default,
so a developer's ``make local`` data is untouched), reads the function's settings from it,
and adds the ``bench_floor`` table that the bare-insert floor writes to.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pg8000.native

from local_stack.postgres import DatabaseInfo

if TYPE_CHECKING:
    from types import TracebackType

logger = logging.getLogger(__name__)

FLOOR_TABLE_SQL = "CREATE TABLE IF NOT EXISTS bench_floor (id text PRIMARY KEY)"
FLOOR_INSERT_SQL = "INSERT INTO bench_floor (id) VALUES (:id) ON CONFLICT DO NOTHING"


def prepare_floor_insert(connection: pg8000.native.Connection) -> pg8000.native.PreparedStatement:
    """Prepare the floor insert on ``connection``; each ``run(id=...)`` is then one round trip.

    ``Connection.run`` with parameters takes three round trips in pg8000 (Parse, Describe,
    then Bind and Execute, each followed by Sync). A prepared statement sends Bind, Execute
    and Sync together, which is the single round trip of the floor. The function prepares
    its statements the same way.
    """
    return connection.prepare(FLOOR_INSERT_SQL)


@dataclass(frozen=True)
class FunctionSettings:
    """The function's settings against the local stack, and the code the stack runs."""

    variables: dict[str, str]
    signing_secret: str
    database: DatabaseInfo
    code_dir: Path
    code_description: str


class BenchEnvironment:
    """Start the local stack for a benchmark run and stop it afterwards.

    Parameters
    ----------
    work_dir:
        Folder for the stack's PostgreSQL data and outputs file.
    build_dir:
        ``sam build`` output folder, passed on to the local stack.
    """

    def __init__(self, work_dir: Path, build_dir: Path) -> None:
        self.work_dir = work_dir
        self.build_dir = build_dir
        self.run_id = secrets.token_hex(4)
        self._stack: Any = None
        self.settings: FunctionSettings | None = None

    def start(self) -> FunctionSettings:
        """Start the local stack (one warm worker) and create and empty ``bench_floor``.

        Returns
        -------
        FunctionSettings
            The function's environment variables, the signing secret, the database and
            the function code the stack chose (the built package when it runs here).
        """
        from local_stack.stack import LocalStack

        self.work_dir.mkdir(parents=True, exist_ok=True)
        # The stack's step lines go to debug: one of them prints the run's signing secret.
        stack = LocalStack(work_dir=self.work_dir, port=0, workers=1, build_dir=self.build_dir, reporter=logger.debug)
        self._stack = stack
        stack.start()
        if stack.database is None or stack.function_code is None:
            raise RuntimeError("the local stack started without a database or function code")
        self.settings = FunctionSettings(
            variables=dict(stack.function_variables),
            signing_secret=stack.signing_secret,
            database=stack.database,
            code_dir=stack.function_code.task_root,
            code_description=stack.function_code.describe(),
        )
        connection = self.connect()
        try:
            connection.run(FLOOR_TABLE_SQL)
            connection.run("TRUNCATE bench_floor")
        finally:
            connection.close()
        logger.info(
            "local stack started in %s: PostgreSQL on %s:%s, Secrets Manager on %s",
            self.work_dir,
            stack.database.host,
            stack.database.port,
            stack.secrets.endpoint_url,
        )
        return self.settings

    def stop(self) -> None:
        """Stop everything :meth:`start` started; safe to call twice."""
        if self._stack is not None:
            self._stack.stop()
            self._stack = None

    def __enter__(self) -> BenchEnvironment:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def connect(self) -> pg8000.native.Connection:
        """Open an autocommit connection to the stack's database as the function's role."""
        if self.settings is None:
            raise RuntimeError("BenchEnvironment.connect() called before start()")
        return connect(self.settings.database)

    def postgres_pid(self) -> int | None:
        """Return the pid of the embedded server's postmaster, or None for a server this run did not start."""
        from local_stack.postgres import EmbeddedPostgres

        server = getattr(self._stack, "postgres", None)
        if not isinstance(server, EmbeddedPostgres):
            return None
        pid_file = server.pgdata / "postmaster.pid"
        try:
            return int(pid_file.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None

    def postgres_description(self) -> tuple[str, dict[str, str]]:
        """Return the server version and the settings that decide commit latency."""
        connection = self.connect()
        try:
            version = str(connection.run("SHOW server_version")[0][0])
            settings = {
                name: str(connection.run(f"SHOW {name}")[0][0])
                for name in ("fsync", "synchronous_commit", "wal_sync_method", "shared_buffers")
            }
        finally:
            connection.close()
        return version, settings


def connect(database: DatabaseInfo) -> pg8000.native.Connection:
    """Open an autocommit pg8000 connection to ``database`` with its owner's credentials, without TLS.

    ``ssl_context=False`` is pg8000's way to turn TLS off. With None, its default, pg8000
    still builds a default SSL context (which loads the system CA bundle) and requests TLS
    from the server first.
    """
    return pg8000.native.Connection(
        user=database.username,
        password=database.password,
        host=database.host,
        port=database.port,
        database=database.name,
        timeout=10,
        ssl_context=False,
    )


def apply_variables(variables: dict[str, str]) -> None:
    """Set ``variables`` in this process's environment, for an in-process handler."""
    os.environ.update(variables)
