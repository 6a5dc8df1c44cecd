"""The local stand-in for the deployed stack, startable from code and from ``make local``.

:class:`LocalStack` starts, in order: PostgreSQL (embedded, or the server ``DATABASE_URL``
names), the stack's database, moto's Secrets Manager with both secrets, the function's
migrations, the function's warm workers and the HTTP API gateway. It then writes the
stack's Outputs to ``<work_dir>/stack-outputs.json`` in the shape ``describe-stacks``
returns them. :meth:`LocalStack.stop` stops everything it started, in reverse order.

Each step reports one line when it starts and one when it ends, through ``reporter``.
A failed step raises :class:`LocalStackError`, which names the step and what to do.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import IO

from local_stack.aws import LOCAL_REGION, LocalSecretsManager
from local_stack.gateway import Gateway, GatewayError, GatewayPortInUse
from local_stack.postgres import (
    DatabaseInfo,
    EmbeddedPostgres,
    ExternalPostgres,
    PostgresError,
    PostgresServer,
    find_free_port,
    server_from_environment,
)
from local_stack.runtime import (
    FUNCTION_ID,
    MIGRATIONS_CALL,
    FunctionCode,
    FunctionError,
    FunctionPool,
    FunctionSettings,
    apply_migrations_with,
    display_path,
    select_function_code,
)

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIR = PROJECT_ROOT / "src"
TEMPLATE_PATH = PROJECT_ROOT / "template.yaml"

ENVIRONMENT = "dev"
ENVIRONMENT_SUFFIX = "local"
RESOURCE_NAME = f"payment-webhook-{ENVIRONMENT}-{ENVIRONMENT_SUFFIX}"
DATABASE_NAME = "payments"
SIGNATURE_TOLERANCE_SECONDS = 300
DB_CONNECT_TIMEOUT_SECONDS = 5
# The embedded PostgreSQL gets a free port first and binds it a moment later, so another
# process can take the port in between. A start that fails that way is tried again.
PORT_ATTEMPTS = 3
OUTPUTS_FILE_NAME = "stack-outputs.json"
FUNCTION_LOG_FILE_NAME = "function.log"
LOCK_FILE_NAME = "stack.lock"

# Outputs of resources that have no local counterpart get values that cannot be
# mistaken for real AWS ids.
LOCAL_PLACEHOLDER_OUTPUTS = {
    "VpcId": "local-vpc",
    "PrivateSubnetIds": "local-private-subnet-a,local-private-subnet-b",
    "FunctionSecurityGroupId": "local-function-security-group",
    "DatabaseSecurityGroupId": "local-database-security-group",
    "KmsKeyArn": "local-kms-key",
}

Reporter = Callable[[str], None]


class LocalStackError(RuntimeError):
    """A step of the local stack failed; the message names the step and the fix."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message


class _StepResult:
    """The line a step reports when it ends; the step's body sets it."""

    def __init__(self) -> None:
        self.message = "done"


class LocalStack:
    """Everything ``make local`` runs, startable from code (integration tests, benchmarks).

    Parameters
    ----------
    work_dir:
        Folder for the embedded PostgreSQL data, its log and the Outputs file.
    port:
        Gateway port on 127.0.0.1; 0 picks a free one.
    workers:
        Number of warm function workers, which is the function's concurrency.
    build_dir:
        ``sam build`` output. The built package must exist and match ``src/``. None runs
        the sources in ``src/`` with the virtual environment's packages.
    reporter:
        Receives one line per step start and end; defaults to this module's logger.
    postgres_server:
        A running server to create the database on (tests pass their session server).
        The stack neither starts nor stops it, and drops its database on stop.
    """

    def __init__(
        self,
        work_dir: Path = Path(".local"),
        port: int = 0,
        workers: int = 4,
        build_dir: Path | None = Path(".aws-sam/build"),
        reporter: Reporter | None = None,
        postgres_server: PostgresServer | None = None,
    ) -> None:
        self.work_dir = work_dir
        self.port = port
        self.workers = workers
        self.build_dir = build_dir
        self.outputs: dict[str, str] = {}
        self.outputs_file = work_dir / OUTPUTS_FILE_NAME
        # The function's JSON log lines, as CloudWatch Logs would hold them.
        self.function_log_file = work_dir / FUNCTION_LOG_FILE_NAME
        self.postgres: PostgresServer = postgres_server or server_from_environment(work_dir / "postgres")
        self.database: DatabaseInfo | None = None
        # Replaced by a new manager at start.
        self.secrets = LocalSecretsManager()
        self.signing_secret = ""
        self.db_secret_arn = ""
        self.signing_secret_arn = ""
        self.function_code: FunctionCode | None = None
        self.function_settings: FunctionSettings | None = None
        self.function_variables: dict[str, str] = {}
        self.function_pool: FunctionPool | None = None
        self.gateway: Gateway | None = None
        self._report = reporter or logger.info
        # The stack owns the server (and may stop it) only when it made it from the environment.
        self._owns_server = postgres_server is None
        # On a shared or external server the database gets a unique name and is dropped on stop.
        self._owns_database_name = self._owns_server and isinstance(self.postgres, EmbeddedPostgres)
        self._lock_file: IO[str] | None = None
        self._postgres_started = False
        self._secrets_started = False

    # --- public -----------------------------------------------------------------------

    @property
    def webhook_url(self) -> str:
        return self.outputs["WebhookUrl"]

    def start(self) -> None:
        """Start every part and write the Outputs file.

        Raises
        ------
        LocalStackError
            A step failed. The failure is reported, and everything started before it
            is stopped again.
        """
        try:
            self._lock_work_dir()
            self._start_postgres()
            self._create_database()
            self._start_secrets()
            self._choose_code()
            self._apply_migrations()
            self._start_function()
            self._start_gateway()
            self._write_outputs()
        except LocalStackError as exc:
            # Reported before the stop lines, so the failure reads first.
            self._report(f"{exc.step}: failed: {exc.message}")
            self.stop()
            raise
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop everything this stack started, in reverse order; safe to call twice.

        A part that fails to stop is reported and the others still stop.
        """
        if self.gateway is not None:
            gateway = self.gateway
            with self._stopping("gateway"):
                gateway.stop()
            self.gateway = None
        if self.function_pool is not None:
            pool = self.function_pool
            with self._stopping("function"):
                pool.stop()
            self.function_pool = None
        if self._secrets_started:
            with self._stopping("secrets"):
                self._delete_secrets()
                self.secrets.stop()
            self._secrets_started = False
        if self.database is not None and not self._owns_database_name:
            database = self.database
            with self._stopping("database", f"dropping {database.name}", "dropped"):
                self.postgres.drop_database(database)
        self.database = None
        if self._postgres_started:
            with self._stopping("postgres"):
                self._stop_postgres()
            self._postgres_started = False
        if self.outputs_file.exists() and self._lock_file is not None:
            # The file describes a running stack, and a stale one would send tests to dead
            # ports. Only the holder of the work folder's lock wrote it.
            self.outputs_file.unlink()
        self._unlock_work_dir()

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- steps ------------------------------------------------------------------------

    @contextmanager
    def _step(self, name: str, starting: str) -> Iterator[_StepResult]:
        """Report a step's start and end; turn its failure into a LocalStackError naming it."""
        self._report(f"{name}: {starting}")
        started = time.monotonic()
        result = _StepResult()
        try:
            yield result
        except LocalStackError:
            raise
        except Exception as exc:
            raise LocalStackError(name, str(exc)) from exc
        self._report(f"{name}: {result.message} ({time.monotonic() - started:.1f} s)")

    @contextmanager
    def _stopping(self, name: str, starting: str = "stopping", done: str = "stopped") -> Iterator[None]:
        self._report(f"{name}: {starting}")
        started = time.monotonic()
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - the other parts must still stop
            logger.exception("stopping %s failed", name)
            self._report(f"{name}: stop failed: {exc}")
            return
        self._report(f"{name}: {done} ({time.monotonic() - started:.1f} s)")

    def _lock_work_dir(self) -> None:
        """Take the work folder's lock, so two stacks never share one PostgreSQL data folder."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        lock_path = self.work_dir / LOCK_FILE_NAME
        lock_file = lock_path.open("a+")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            lock_file.seek(0)
            holder = lock_file.read().strip() or "unknown"
            lock_file.close()
            raise LocalStackError(
                "stack",
                f"another local stack uses {self.work_dir} (pid {holder}): stop it first (Ctrl-C in its terminal)",
            ) from exc
        lock_file.truncate(0)
        lock_file.write(str(os.getpid()))
        lock_file.flush()
        self._lock_file = lock_file

    def _unlock_work_dir(self) -> None:
        if self._lock_file is not None:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def _start_postgres(self) -> None:
        server = self.postgres
        if not self._owns_server:
            self._report(f"postgres: using the running server on {server.host}:{server.port}")
            return
        if isinstance(server, ExternalPostgres):
            with self._step("postgres", f"connecting to DATABASE_URL's server on {server.host}:{server.port}") as step:
                try:
                    server.start()
                except Exception as exc:
                    raise LocalStackError(
                        "postgres",
                        f"cannot connect to {server.host}:{server.port}: {exc}: check DATABASE_URL "
                        "(its role needs CREATEDB and CREATEROLE), or unset it to use the embedded server",
                    ) from exc
                step.message = f"connected to {server.host}:{server.port}"
            return
        assert isinstance(server, EmbeddedPostgres)
        starting = f"starting the embedded PostgreSQL (data in {display_path(server.data_dir)})"
        with self._step("postgres", starting) as step:
            if (server.pgdata / "postmaster.pid").exists():
                # The work folder lock proves no running stack owns this server, so it was
                # left behind by a stack that was killed.
                self._report("postgres: stopping a server left running by an earlier run")
                try:
                    server.stop(mode="fast")
                except PostgresError as exc:
                    logger.info("no earlier server to stop: %s", exc)
            # Set before the start, so a start that fails after the server came up still stops it.
            self._postgres_started = True
            for attempt in range(1, PORT_ATTEMPTS + 1):
                try:
                    server.start()
                    break
                except PostgresError as exc:
                    if "Address already in use" in str(exc) and attempt < PORT_ATTEMPTS:
                        server.port = find_free_port(server.host)
                        self._report(f"postgres: the port was taken meanwhile, trying port {server.port}")
                        continue
                    raise LocalStackError(
                        "postgres",
                        f"{exc}\nSee {server.log_file}; `make clean` deletes the local data if it is damaged.",
                    ) from exc
            step.message = f"listening on {server.host}:{server.port}"

    def _delete_secrets(self) -> None:
        """Delete this stack's secrets, which moto would otherwise keep until the process ends."""
        client = self.secrets.client()
        for arn in (self.db_secret_arn, self.signing_secret_arn):
            if arn:
                client.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)

    def _stop_postgres(self) -> None:
        try:
            self.postgres.stop()
        except PostgresError:
            # The server may have shut down on its own, for example after a signal to its
            # process group. pg_ctl fails when that happens between its check and its stop.
            server = self.postgres
            if isinstance(server, EmbeddedPostgres) and not (server.pgdata / "postmaster.pid").exists():
                return
            raise

    def _create_database(self) -> None:
        if self._owns_database_name:
            name = DATABASE_NAME
        else:
            name = f"{DATABASE_NAME}_local_{secrets.token_hex(4)}"
        with self._step("database", f"creating {name}") as step:
            if self._owns_database_name:
                # Every start begins with an empty database, like a fresh deployment.
                owner = f"{name}_owner"
                stale = DatabaseInfo(self.postgres.host, self.postgres.port, name, owner, "")
                self.postgres.drop_database(stale)
            self.database = self.postgres.create_database(name)
            step.message = f"{name} created (empty), owned by {self.database.username}"

    def _start_secrets(self) -> None:
        assert self.database is not None
        with self._step("secrets", "starting Secrets Manager (moto) on 127.0.0.1") as step:
            self._start_moto()
            self.signing_secret = "whsec_" + secrets.token_hex(24)
            # moto keeps secrets per process, not per server, so two stacks in one process
            # (a test session) need different names.
            prefix = f"{RESOURCE_NAME}/{secrets.token_hex(3)}"
            self.db_secret_arn = self.secrets.create_secret(f"{prefix}/database-master", self.database.secret_json())
            self.signing_secret_arn = self.secrets.create_secret(f"{prefix}/webhook-signing", self.signing_secret)
            step.message = f"listening on {self.secrets.endpoint_url} with the database and signing secrets"
        self._report(
            f"secrets: signing secret for this run: {self.signing_secret} "
            "(new on every start; also in Secrets Manager at the WebhookSigningSecretArn output)"
        )

    def _start_moto(self) -> None:
        """Start moto's server; it binds a free loopback port itself."""
        self.secrets = LocalSecretsManager()
        self.secrets.start()
        self._secrets_started = True

    def _choose_code(self) -> None:
        build = "the sources in src/" if self.build_dir is None else display_path(self.build_dir / FUNCTION_ID)
        with self._step("code", f"checking {build}") as step:
            try:
                self.function_settings = FunctionSettings.from_template(
                    TEMPLATE_PATH, function_name=RESOURCE_NAME, region=LOCAL_REGION
                )
                self.function_code = select_function_code(self.build_dir, SOURCE_DIR)
            except FunctionError as exc:
                raise LocalStackError("code", str(exc)) from exc
            step.message = self.function_code.describe()

    def _apply_migrations(self) -> None:
        assert self.database is not None and self.function_code is not None
        with self._step("migrations", f"applying with {MIGRATIONS_CALL}") as step:
            connection = {
                "host": self.database.host,
                "port": self.database.port,
                "database": self.database.name,
                "user": self.database.username,
                "password": self.database.password,
                "timeout": DB_CONNECT_TIMEOUT_SECONDS,
            }
            try:
                applied = apply_migrations_with(self.function_code, connection)
            except FunctionError as exc:
                raise LocalStackError(
                    "migrations",
                    f"apply_migrations failed: {exc}\nFix the migration in src/payment_webhook/migrations/ "
                    "and start again.",
                ) from exc
            step.message = f"applied {', '.join(applied)}" if applied else "nothing to apply"

    def _start_function(self) -> None:
        assert self.function_code is not None and self.function_settings is not None
        self.function_variables = self._function_variables()
        settings = self.function_settings
        with self._step("function", f"starting {self.workers} warm workers of {settings.handler}") as step:
            pool = FunctionPool(
                self.function_code, settings, self.function_variables, size=self.workers, log_file=self.function_log_file
            )
            try:
                init_ms = pool.start()
            except FunctionError as exc:
                raise LocalStackError("function", f"the handler failed its init: {exc}") from exc
            self.function_pool = pool
            step.message = (
                f"{len(init_ms)} workers ready, init {min(init_ms):.0f}-{max(init_ms):.0f} ms, "
                f"timeout {settings.timeout_seconds} s, {settings.memory_mb} MB, "
                f"logs in {display_path(self.function_log_file)}"
            )

    def _function_variables(self) -> dict[str, str]:
        """Return the function's environment variables as the template sets them, pointed at local parts."""
        assert self.database is not None
        return {
            **self.secrets.function_environment(),
            "DB_HOST": self.database.host,
            "DB_PORT": str(self.database.port),
            "DB_NAME": self.database.name,
            "DB_SECRET_ARN": self.db_secret_arn,
            # TLS is only skipped for a server on this machine, which the function allows.
            "DB_SSLMODE": "disable" if _is_loopback(self.database.host) else "require",
            "DB_CONNECT_TIMEOUT_SECONDS": str(DB_CONNECT_TIMEOUT_SECONDS),
            "SIGNING_SECRET_ARN": self.signing_secret_arn,
            "SIGNATURE_TOLERANCE_SECONDS": str(SIGNATURE_TOLERANCE_SECONDS),
            "POWERTOOLS_SERVICE_NAME": "payment-webhook",
            "POWERTOOLS_METRICS_NAMESPACE": "PaymentWebhook",
            "POWERTOOLS_LOG_LEVEL": "INFO",
        }

    def _start_gateway(self) -> None:
        assert self.function_pool is not None
        with self._step("gateway", f"starting on 127.0.0.1:{self.port}") as step:
            gateway = Gateway(self.function_pool.invoke, port=self.port)
            try:
                gateway.start()
            except GatewayPortInUse as exc:
                suggestion = exc.port + 1
                raise LocalStackError(
                    "gateway",
                    f"port {exc.port} is in use: run with LOCAL_PORT={suggestion} "
                    f"(make local LOCAL_PORT={suggestion}, or --port {suggestion})",
                ) from exc
            except GatewayError as exc:
                raise LocalStackError("gateway", str(exc)) from exc
            self.gateway = gateway
            step.message = f"listening on {gateway.base_url}, route {gateway.route_key}"

    def _write_outputs(self) -> None:
        assert self.gateway is not None
        assert self.database is not None
        assert self.function_settings is not None
        with self._step("outputs", f"writing {display_path(self.outputs_file)}") as step:
            settings = self.function_settings
            self.outputs = {
                "WebhookUrl": self.gateway.route_url,
                "FunctionName": settings.function_name,
                "FunctionArn": settings.function_arn,
                "FunctionLogGroupName": f"/aws/lambda/{settings.function_name}",
                "VpcId": LOCAL_PLACEHOLDER_OUTPUTS["VpcId"],
                "PrivateSubnetIds": LOCAL_PLACEHOLDER_OUTPUTS["PrivateSubnetIds"],
                "FunctionSecurityGroupId": LOCAL_PLACEHOLDER_OUTPUTS["FunctionSecurityGroupId"],
                "DatabaseSecurityGroupId": LOCAL_PLACEHOLDER_OUTPUTS["DatabaseSecurityGroupId"],
                "DbEndpointAddress": self.database.host,
                "DbEndpointPort": str(self.database.port),
                "DbName": self.database.name,
                "DbMasterSecretArn": self.db_secret_arn,
                "WebhookSigningSecretArn": self.signing_secret_arn,
                "KmsKeyArn": LOCAL_PLACEHOLDER_OUTPUTS["KmsKeyArn"],
                "Environment": ENVIRONMENT,
                "EnvironmentSuffix": ENVIRONMENT_SUFFIX,
                "AwsEndpointUrl": self.secrets.endpoint_url,
            }
            document = [{"OutputKey": key, "OutputValue": value} for key, value in self.outputs.items()]
            partial = self.outputs_file.with_suffix(".json.partial")
            partial.write_text(json.dumps(document, indent=2) + "\n")
            partial.replace(self.outputs_file)
            step.message = f"{len(document)} outputs in {display_path(self.outputs_file)}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
