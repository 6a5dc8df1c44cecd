"""Lambda's execution model on this host: warm worker processes that import the handler once.

Each worker stands for one warm Lambda execution environment. It is a separate Python
process that imports the handler module during its init phase, then handles one
invocation at a time, so module-level caches and database connections persist per worker
as they do per execution environment in Lambda. :class:`FunctionPool` keeps N workers and
hands each invocation to an idle one.

Workers are plain subprocesses started as ``python -I -S -B`` with this file as the script.
The isolated interpreter imports only from the standard library until the worker puts
the function code on ``sys.path``. So when the built package runs, nothing can come from the
project's virtual environment by accident. A worker that times out or crashes is killed
and replaced on its own, which a ``ProcessPoolExecutor`` cannot do (one dead process
breaks the whole executor).

The top level of this file imports only the standard library, because the workers run it
as a script before any other code is importable.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import platform
import queue
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

FUNCTION_ID = "PaymentWebhookFunction"
DEFAULT_HANDLER = "payment_webhook.handlers.webhook.lambda_handler"
MIGRATIONS_CALL = "payment_webhook.dal.migrations.apply_migrations"

# Lambda's own defaults, used when the template sets no Timeout or MemorySize.
LAMBDA_DEFAULT_TIMEOUT_SECONDS = 3
LAMBDA_DEFAULT_MEMORY_MB = 128
# Lambda stops an init phase that takes longer than 10 seconds.
INIT_TIMEOUT_SECONDS = 10
STOP_TIMEOUT_SECONDS = 5

# ELF e_machine values (System V ABI) for the architectures Lambda offers.
ELF_MACHINE_BY_ARCHITECTURE = {"x86_64": 62, "arm64": 183}
HOST_ARCHITECTURE_NAMES = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}

# moto's default account, so the local function's ARN and the secrets' ARNs share one account.
LOCAL_ACCOUNT_ID = "123456789012"

WORKER_SCRIPT = Path(__file__).resolve()


class FunctionError(RuntimeError):
    """The function code could not be chosen, started or run."""


class FunctionPoolClosed(FunctionError):
    """The pool is stopped, so no worker can take the invocation."""


class WorkerExited(FunctionError):
    """A worker process ended while the pool waited for its response."""


@dataclass(frozen=True)
class FunctionSettings:
    """The function's configuration that matters locally, read from template.yaml."""

    function_id: str = FUNCTION_ID
    handler: str = DEFAULT_HANDLER
    runtime: str = "python3.13"
    architecture: str = "arm64"
    timeout_seconds: int = LAMBDA_DEFAULT_TIMEOUT_SECONDS
    memory_mb: int = LAMBDA_DEFAULT_MEMORY_MB
    log_format: str = "Text"
    application_log_level: str = ""
    function_name: str = "payment-webhook-dev-local"
    account_id: str = LOCAL_ACCOUNT_ID
    region: str = "us-east-1"

    @property
    def function_arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function_name}"

    @classmethod
    def from_template(cls, template_path: Path, function_id: str = FUNCTION_ID, **overrides: Any) -> FunctionSettings:
        """Return the settings of ``function_id`` in the template, with ``overrides`` applied.

        The template gives Handler, Runtime, Architectures, Timeout, MemorySize and
        LoggingConfig. Without a template file, every setting is a default.

        A property that the template leaves out, or sets with an intrinsic function,
        falls back to ``Globals.Function`` and then to Lambda's default.

        Raises
        ------
        FunctionError
            The template exists but cannot be parsed, or has no resource ``function_id``.
        """
        if not template_path.exists():
            return cls(function_id=function_id, **overrides)
        properties, globals_ = read_function_properties(template_path, function_id)

        def pick(name: str, kind: type) -> Any:
            for source in (properties, globals_):
                value = source.get(name)
                if isinstance(value, kind) and not isinstance(value, bool):
                    return value
            return None

        values: dict[str, Any] = {"function_id": function_id}
        architectures = pick("Architectures", list)
        if architectures and isinstance(architectures[0], str):
            values["architecture"] = architectures[0]
        for key, name, kind in (
            ("handler", "Handler", str),
            ("runtime", "Runtime", str),
            ("timeout_seconds", "Timeout", int),
            ("memory_mb", "MemorySize", int),
        ):
            value = pick(name, kind)
            if value is not None:
                values[key] = value
        logging_config = pick("LoggingConfig", dict) or {}
        if isinstance(logging_config.get("LogFormat"), str):
            values["log_format"] = logging_config["LogFormat"]
        if isinstance(logging_config.get("ApplicationLogLevel"), str):
            values["application_log_level"] = logging_config["ApplicationLogLevel"]
        values.update(overrides)
        return cls(**values)


def read_function_properties(template_path: Path, function_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return the Properties of ``function_id`` and the template's ``Globals.Function``.

    The template is parsed with SAM's own YAML loader, which understands the short forms
    of intrinsic functions (``!Ref``, ``!Sub``).

    Raises
    ------
    FunctionError
        The template cannot be parsed, or has no resource ``function_id``.
    """
    from samtranslator.yaml_helper import yaml_parse

    try:
        template = yaml_parse(template_path.read_text())
    except Exception as exc:
        raise FunctionError(f"{template_path} cannot be parsed: {exc}") from exc
    resources = template.get("Resources") or {}
    resource = resources.get(function_id)
    if not isinstance(resource, dict):
        raise FunctionError(f"{template_path} has no resource {function_id}: check the function's logical ID")
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    return resource.get("Properties") or {}, globals_


# --- Compiled extensions -------------------------------------------------------------


def host_architecture() -> str:
    """Return this machine's architecture in Lambda's spelling (``x86_64`` or ``arm64``)."""
    machine = platform.machine().lower()
    return HOST_ARCHITECTURE_NAMES.get(machine, machine)


def read_elf_machine(path: Path) -> int | None:
    """Return the ELF header's e_machine field of ``path``, or None when it is not an ELF file."""
    with path.open("rb") as file:
        header = file.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    byte_order = "little" if header[5] == 1 else "big"
    return int.from_bytes(header[18:20], byte_order)


def find_compiled_files(folder: Path) -> list[Path]:
    """Return every shared object below ``folder``: extension modules and bundled libraries."""
    found = [path for path in folder.rglob("*") if path.is_file() and _is_shared_object_name(path.name)]
    return sorted(found)


def _is_shared_object_name(name: str) -> bool:
    return name.endswith(".so") or ".so." in name


def extension_tag(path: Path) -> str | None:
    """Return the ABI tag in an extension module's file name, or None when it has none.

    ``_speedups.cpython-313-aarch64-linux-gnu.so`` gives ``cpython-313-aarch64-linux-gnu``,
    ``_speedups.abi3.so`` gives ``abi3`` and ``_speedups.so`` gives None.
    """
    if not path.name.endswith(".so"):
        return None
    parts = path.name[: -len(".so")].split(".")
    if len(parts) < 2:
        return None
    tag = parts[-1]
    if tag == "abi3" or tag.startswith("cpython-"):
        return tag
    return None


def reasons_not_runnable_here(folder: Path) -> list[str]:
    """Return why compiled files in ``folder`` cannot load in this interpreter (empty when all can)."""
    host_machine = ELF_MACHINE_BY_ARCHITECTURE.get(host_architecture())
    host_suffix = sysconfig.get_config_var("EXT_SUFFIX") or ""
    reasons = []
    for path in find_compiled_files(folder):
        relative = path.relative_to(folder)
        machine = read_elf_machine(path)
        if machine is None:
            reasons.append(f"{relative} is not an ELF file")
            continue
        if machine != host_machine:
            architecture = _architecture_of_machine(machine)
            reasons.append(f"{relative} is built for {architecture}, this host is {host_architecture()}")
            continue
        tag = extension_tag(path)
        if tag is not None and tag != "abi3" and not host_suffix.startswith(f".{tag}"):
            reasons.append(f"{relative} is built for {tag}, this interpreter loads {host_suffix.strip('.')}")
    return reasons


def _architecture_of_machine(machine: int) -> str:
    for name, value in ELF_MACHINE_BY_ARCHITECTURE.items():
        if value == machine:
            return name
    return f"ELF machine {machine}"


# --- Which code runs ------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionCode:
    """The folders a worker puts on ``sys.path``, and why this code was chosen.

    ``code_dirs`` come first on the path, as ``/var/task`` does in Lambda. ``site_dirs``
    are added after them with their ``.pth`` files processed (the virtual environment's
    site-packages when the sources run).
    """

    code_dirs: tuple[Path, ...]
    site_dirs: tuple[Path, ...] = ()
    origin: str = "build"
    reason: str = ""

    @property
    def task_root(self) -> Path:
        return self.code_dirs[0]

    def describe(self) -> str:
        """Return one line that names the code and why it was chosen."""
        where = display_path(self.task_root)
        if self.origin == "build":
            return f"running the built package {where} ({self.reason})"
        return f"running the sources in {where} with the virtual environment's packages ({self.reason})"


def display_path(path: Path) -> str:
    """Return ``path`` relative to the current folder when it lies below it, for messages."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def source_code(source_dir: Path, reason: str) -> FunctionCode:
    """Return the sources in ``source_dir`` with this interpreter's site-packages."""
    paths = sysconfig.get_paths()
    site_dirs = tuple(dict.fromkeys(Path(paths[key]) for key in ("purelib", "platlib")))
    return FunctionCode(code_dirs=(source_dir.resolve(),), site_dirs=site_dirs, origin="source", reason=reason)


def select_function_code(build_dir: Path | None, source_dir: Path, function_id: str = FUNCTION_ID) -> FunctionCode:
    """Choose the code the workers run: the built package when it runs here, else the sources.

    Parameters
    ----------
    build_dir:
        The ``sam build`` output folder (``.aws-sam/build``), or None to run the sources.
    source_dir:
        The function's CodeUri (``src/``).
    function_id:
        The function's logical ID; its package is ``build_dir / function_id``.

    Returns
    -------
    FunctionCode
        The built package when every compiled file in it loads on this host, otherwise
        ``source_dir`` with this interpreter's site-packages. ``reason`` gives the cause.

    Raises
    ------
    FunctionError
        The built package is missing, or its copy of the sources differs from ``source_dir``.
    """
    if build_dir is None:
        return source_code(source_dir, "the build check is off")
    package_dir = (build_dir / function_id).resolve()
    if not package_dir.is_dir():
        raise FunctionError(
            f"{display_path(package_dir)} not found: run `make build` first, "
            "or pass --no-build-check to run the sources in src/"
        )
    stale = first_stale_file(package_dir, source_dir)
    if stale is not None:
        raise FunctionError(
            f"the built package is older than the sources ({stale} differs): run `make build`, "
            "or pass --no-build-check to run the sources in src/"
        )
    reasons = reasons_not_runnable_here(package_dir)
    if reasons:
        return source_code(source_dir, f"the built package cannot load here: {reasons[0]}")
    compiled = find_compiled_files(package_dir)
    if compiled:
        reason = f"its {len(compiled)} compiled files load on this {host_architecture()} host"
    else:
        reason = f"it has no compiled files, so it runs on this {host_architecture()} host as it is"
    return FunctionCode(code_dirs=(package_dir,), origin="build", reason=reason)


def first_stale_file(package_dir: Path, source_dir: Path) -> str | None:
    """Return the first source file whose copy in ``package_dir`` is missing or different."""
    for path in sorted(source_dir.rglob("*")):
        if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
            continue
        relative = path.relative_to(source_dir)
        copy = package_dir / relative
        if not copy.is_file() or copy.read_bytes() != path.read_bytes():
            return str(relative)
    return None


# --- Invocations ----------------------------------------------------------------------


@dataclass(frozen=True)
class InvocationError:
    """A failed invocation in the shape Lambda reports it (errorType, errorMessage, stackTrace)."""

    error_type: str
    message: str
    stack_trace: tuple[str, ...] = ()

    def summary(self) -> str:
        return f"{self.error_type}: {self.message}"


@dataclass(frozen=True)
class Invocation:
    """The outcome of one invocation: the handler's JSON result, or an error."""

    request_id: str
    result: Any = None
    error: InvocationError | None = None
    duration_ms: float = 0.0
    worker_pid: int | None = None


def lambda_environment(settings: FunctionSettings, code: FunctionCode, variables: dict[str, str]) -> dict[str, str]:
    """Return a worker's whole environment: what Lambda sets, then the function's variables.

    Nothing else from this process's environment reaches the workers, as in Lambda,
    except PATH.
    """
    log_group = f"/aws/lambda/{settings.function_name}"
    environment = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "en_US.UTF-8",
        "TZ": ":UTC",
        "LAMBDA_TASK_ROOT": str(code.task_root),
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{settings.runtime}",
        "AWS_LAMBDA_FUNCTION_NAME": settings.function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(settings.memory_mb),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": log_group,
        "AWS_REGION": settings.region,
        "AWS_DEFAULT_REGION": settings.region,
    }
    # Lambda's advanced logging controls: with the JSON log format, Lambda sets these two
    # variables for the function (Powertools Logger reads the level).
    if settings.log_format == "JSON":
        environment["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
        if settings.application_log_level:
            environment["AWS_LAMBDA_LOG_LEVEL"] = settings.application_log_level
    environment.update(variables)
    return environment


def _worker_command(code: FunctionCode, command: str, fd: int, *extra: str) -> list[str]:
    # -B: -I ignores PYTHONDONTWRITEBYTECODE, so the flag keeps __pycache__ out of the build.
    arguments = [sys.executable, "-I", "-S", "-B", "-u", str(WORKER_SCRIPT), command, "--fd", str(fd)]
    for path in code.code_dirs:
        arguments += ["--path", str(path)]
    for path in code.site_dirs:
        arguments += ["--site", str(path)]
    return [*arguments, *extra]


class FunctionWorker:
    """One warm execution environment: a worker process that imported the handler."""

    def __init__(
        self,
        code: FunctionCode,
        settings: FunctionSettings,
        environment: dict[str, str],
        name: str,
        log_file: Path | None = None,
    ) -> None:
        self.code = code
        self.settings = settings
        self.environment = environment
        self.name = name
        self.log_file = log_file
        self.init_ms: float | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._connection: Connection | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the process and wait for its init phase (the handler import) to finish.

        Raises
        ------
        FunctionError
            The handler failed to import, or init took longer than Lambda allows.
        """
        parent_end, child_end = socket.socketpair()
        environment = {**self.environment, "AWS_LAMBDA_LOG_STREAM_NAME": f"local/{self.name}/{uuid.uuid4().hex}"}
        # The function's log lines go to the log file when there is one, as they go to the
        # log group in Lambda, so they do not bury the local stack's own output.
        log_stream = self.log_file.open("ab") if self.log_file is not None else None
        try:
            self._process = subprocess.Popen(
                _worker_command(
                    self.code,
                    "serve",
                    child_end.fileno(),
                    "--handler",
                    self.settings.handler,
                    "--function-arn",
                    self.settings.function_arn,
                ),
                env=environment,
                cwd=self.code.task_root,
                pass_fds=(child_end.fileno(),),
                stdout=log_stream,
                stderr=log_stream,
            )
        finally:
            child_end.close()
            if log_stream is not None:
                log_stream.close()
        self._connection = Connection(parent_end.detach())
        try:
            message = self._receive(INIT_TIMEOUT_SECONDS)
        except WorkerExited as exc:
            self.kill()
            raise FunctionError(f"init of {self.name} failed: {exc}") from exc
        if message is None:
            self.kill()
            raise FunctionError(f"init of {self.name} timed out after {INIT_TIMEOUT_SECONDS} s")
        if "init_error" in message:
            self.kill()
            error = _error_from_message(message["init_error"])
            raise FunctionError(f"{error.summary()}\n" + "".join(error.stack_trace))
        self.init_ms = float(message.get("init_ms", 0.0))
        logger.debug("worker %s (pid %s) ready after %.0f ms", self.name, self.pid, self.init_ms)

    def _receive(self, timeout: float) -> dict[str, Any] | None:
        """Return the worker's next message, or None when none came within ``timeout`` seconds.

        Raises
        ------
        WorkerExited
            The worker process ended (its connection reached end of file).
        """
        assert self._connection is not None
        try:
            if not self._connection.poll(timeout):
                return None
            return json.loads(self._connection.recv_bytes())
        except (EOFError, OSError) as exc:
            status = self._process.wait(timeout=STOP_TIMEOUT_SECONDS) if self._process else None
            raise WorkerExited(f"the worker process exited with status {status}") from exc

    def invoke(self, event: dict[str, Any], request_id: str, trace_id: str) -> Invocation:
        """Run the handler on ``event`` in this worker and wait at most the function's timeout."""
        if self._connection is None or not self.alive:
            return Invocation(request_id, error=InvocationError("Runtime.ExitError", "the worker is not running"))
        started = time.monotonic()
        deadline_ms = int(time.time() * 1000) + self.settings.timeout_seconds * 1000
        request = {"request_id": request_id, "event": event, "deadline_ms": deadline_ms, "trace_id": trace_id}
        try:
            self._connection.send_bytes(json.dumps(request).encode())
        except OSError as exc:
            self.kill()
            return Invocation(request_id, error=InvocationError("Runtime.ExitError", f"the worker is gone: {exc}"))
        try:
            message = self._receive(self.settings.timeout_seconds)
        except WorkerExited as exc:
            self.kill()
            error = InvocationError("Runtime.ExitError", str(exc))
            return Invocation(request_id, error=error, duration_ms=_elapsed_ms(started), worker_pid=self.pid)
        if message is None:
            # Lambda ends the execution environment of a timed-out invocation.
            self.kill()
            error = InvocationError(
                "Sandbox.Timedout", f"Task timed out after {self.settings.timeout_seconds:.2f} seconds"
            )
            return Invocation(request_id, error=error, duration_ms=_elapsed_ms(started), worker_pid=self.pid)
        if "error" in message:
            error = _error_from_message(message["error"])
            return Invocation(request_id, error=error, duration_ms=_elapsed_ms(started), worker_pid=self.pid)
        result = message.get("result")
        return Invocation(request_id, result=result, duration_ms=_elapsed_ms(started), worker_pid=self.pid)

    def stop(self) -> None:
        """Close the worker's connection, which ends its loop, and wait for it to exit."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._process is None:
            return
        try:
            self._process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def terminate(self) -> None:
        """Kill the worker process only; safe while another thread waits for its response."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()

    def kill(self) -> None:
        """End the worker at once, as Lambda does after a timeout, and close its connection."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _elapsed_ms(started: float) -> float:
    return (time.monotonic() - started) * 1000


def _error_from_message(payload: dict[str, Any]) -> InvocationError:
    return InvocationError(
        error_type=str(payload.get("errorType", "Unknown")),
        message=str(payload.get("errorMessage", "")),
        stack_trace=tuple(str(line) for line in payload.get("stackTrace") or ()),
    )


class FunctionPool:
    """N warm workers of one function; each takes one invocation at a time.

    An invocation waits for an idle worker when all are busy.
    NOTE: Lambda would start more execution environments, up to the account's concurrency
    limit, instead of queueing. Here the pool size is the concurrency limit.
    """

    def __init__(
        self,
        code: FunctionCode,
        settings: FunctionSettings,
        variables: dict[str, str],
        size: int = 4,
        log_file: Path | None = None,
    ) -> None:
        self.code = code
        self.settings = settings
        self.variables = variables
        self.size = size
        self.log_file = log_file
        self.environment = lambda_environment(settings, code, variables)
        self._idle: queue.Queue[FunctionWorker] = queue.Queue()
        self._workers: set[FunctionWorker] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._started_count = 0

    def start(self) -> list[float]:
        """Start every worker in parallel and return their init durations in ms.

        Raises
        ------
        FunctionError
            A worker failed its init phase; the workers already started are stopped.
        """
        if self.size < 1:
            raise FunctionError(f"the worker count {self.size} is invalid: use 1 or more")
        workers = [self._new_worker() for _ in range(self.size)]
        errors: list[BaseException] = []

        def start_one(worker: FunctionWorker) -> None:
            try:
                worker.start()
            except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
                errors.append(exc)

        threads = [threading.Thread(target=start_one, args=(worker,)) for worker in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            self.stop()
            raise errors[0]
        for worker in workers:
            self._idle.put(worker)
        return [worker.init_ms or 0.0 for worker in workers]

    def _new_worker(self) -> FunctionWorker:
        with self._lock:
            if self._closed:
                raise FunctionPoolClosed("the function pool is stopped")
            self._started_count += 1
            worker = FunctionWorker(
                self.code, self.settings, self.environment, f"worker-{self._started_count}", log_file=self.log_file
            )
            self._workers.add(worker)
        return worker

    def invoke(self, event: dict[str, Any], trace_id: str = "") -> Invocation:
        """Run one invocation on an idle worker; wait for one when all are busy.

        Raises
        ------
        FunctionPoolClosed
            The pool is stopped.
        """
        request_id = str(uuid.uuid4())
        while True:
            if self._closed:
                raise FunctionPoolClosed("the function pool is stopped")
            try:
                worker = self._idle.get(timeout=0.5)
            except queue.Empty:
                continue
            if worker.alive:
                break
            self._retire(worker)
        try:
            invocation = worker.invoke(event, request_id, trace_id)
        finally:
            if self._closed:
                worker.stop()
                self._forget(worker)
            elif worker.alive:
                self._idle.put(worker)
            else:
                self._retire(worker)
        return invocation

    def _forget(self, worker: FunctionWorker) -> None:
        with self._lock:
            self._workers.discard(worker)

    def _retire(self, worker: FunctionWorker) -> None:
        """Drop a dead worker and start its replacement in the background."""
        worker.kill()
        self._forget(worker)
        if not self._closed:
            threading.Thread(target=self._replace, name="function-worker-replacement", daemon=True).start()

    def _replace(self) -> None:
        while not self._closed:
            try:
                worker = self._new_worker()
            except FunctionPoolClosed:
                return
            try:
                worker.start()
            except FunctionError as exc:
                logger.error("replacement worker %s failed its init: %s", worker.name, exc)
                self._forget(worker)
                # The next attempt runs the init again, as Lambda does for a new
                # execution environment; the pause keeps a broken import from spinning.
                time.sleep(1)
                continue
            if self._closed:
                worker.stop()
                self._forget(worker)
            else:
                self._idle.put(worker)
            return

    def worker_pids(self) -> list[int]:
        """Return the process ids of the workers that run now."""
        with self._lock:
            return [worker.pid for worker in self._workers if worker.pid is not None and worker.alive]

    def stop(self) -> None:
        """Stop every worker; safe to call twice.

        Idle workers stop at once. A running invocation gets up to the function's timeout
        to finish, then its worker is killed.
        """
        self._closed = True
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                break
            worker.stop()
            self._forget(worker)
        deadline = time.monotonic() + self.settings.timeout_seconds + 1
        while time.monotonic() < deadline:
            with self._lock:
                if not self._workers:
                    return
            time.sleep(0.05)
        with self._lock:
            remaining = list(self._workers)
        for worker in remaining:
            # The thread that runs the invocation gets end of file from the worker and cleans up.
            worker.terminate()


def apply_migrations_with(code: FunctionCode, connection: dict[str, Any], timeout: float = 60) -> list[str]:
    """Run the function's ``apply_migrations`` in a fresh process with ``code`` on its path.

    This is the call the migration custom resource makes on deploy, run from the same
    code the workers run.

    Parameters
    ----------
    code:
        The function code (built package or sources).
    connection:
        Keyword arguments of ``pg8000.native.Connection`` (host, port, database, user, password).
    timeout:
        Seconds to wait for the migrations.

    Returns
    -------
    list[str]
        The versions that ``apply_migrations`` applied (empty when none were pending).

    Raises
    ------
    FunctionError
        The migrations failed or timed out; the message carries the error and its traceback.
    """
    parent_end, child_end = socket.socketpair()
    try:
        process = subprocess.Popen(
            _worker_command(code, "apply-migrations", child_end.fileno()),
            env={"PATH": os.environ.get("PATH", ""), "LANG": "en_US.UTF-8", "TZ": ":UTC"},
            cwd=code.task_root,
            pass_fds=(child_end.fileno(),),
        )
    finally:
        child_end.close()
    channel = Connection(parent_end.detach())
    try:
        channel.send_bytes(json.dumps(connection).encode())
        if not channel.poll(timeout):
            process.kill()
            raise FunctionError(f"apply_migrations did not finish within {timeout:.0f} s")
        message = json.loads(channel.recv_bytes())
    except EOFError as exc:
        raise FunctionError(f"the migration process exited with status {process.wait()}") from exc
    finally:
        channel.close()
        process.wait()
    if "error" in message:
        error = _error_from_message(message["error"])
        raise FunctionError(f"{error.summary()}\n" + "".join(error.stack_trace))
    return [str(version) for version in message["result"]]


# --- Inside a worker process ----------------------------------------------------------
# Everything below runs in the isolated worker interpreter (python -I -S -B).


class LambdaContext:
    """The context object Lambda's Python runtime passes to the handler.

    As in Lambda's runtime, ``memory_limit_in_mb`` is the string that
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE contains.
    """

    def __init__(self, request_id: str, deadline_ms: int, invoked_function_arn: str) -> None:
        self.aws_request_id = request_id
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
        self.invoked_function_arn = invoked_function_arn
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        """Return the milliseconds left before the invocation times out (0 once it has)."""
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _error_payload(exc: BaseException, error_type: str | None = None, message: str | None = None) -> dict[str, Any]:
    return {
        "errorType": error_type or type(exc).__name__,
        "errorMessage": message if message is not None else str(exc),
        # Lambda's stack trace starts at the handler, not in the runtime that called it.
        "stackTrace": traceback.format_list(
            [frame for frame in traceback.extract_tb(exc.__traceback__) if frame.filename != __file__]
        ),
    }


def _set_import_path(code_dirs: list[str], site_dirs: list[str]) -> None:
    sys.path[:0] = code_dirs
    if site_dirs:
        import site

        for directory in site_dirs:
            site.addsitedir(directory)


def _load_handler(spec: str) -> Any:
    module_name, _, attribute = spec.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        message = f"Unable to import module '{module_name}': {exc}"
        raise _InitError(_error_payload(exc, "Runtime.ImportModuleError", message)) from exc
    handler = getattr(module, attribute, None)
    if not callable(handler):
        message = f"Handler '{attribute}' missing on module '{module_name}'"
        raise _InitError({"errorType": "Runtime.HandlerNotFound", "errorMessage": message})
    return handler


class _InitError(Exception):
    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(payload["errorMessage"])
        self.payload = payload


def _serve(channel: Connection, handler_spec: str, function_arn: str) -> int:
    started = time.monotonic()
    try:
        handler = _load_handler(handler_spec)
    except _InitError as exc:
        channel.send_bytes(json.dumps({"init_error": exc.payload}).encode())
        return 1
    channel.send_bytes(json.dumps({"ready": True, "init_ms": (time.monotonic() - started) * 1000}).encode())
    while True:
        try:
            request = json.loads(channel.recv_bytes())
        except EOFError:
            return 0
        # Lambda sets the trace header per invocation; libraries such as Powertools read it.
        os.environ["_X_AMZN_TRACE_ID"] = request.get("trace_id", "")
        context = LambdaContext(request["request_id"], request["deadline_ms"], function_arn)
        try:
            result = handler(request["event"], context)
        except Exception as exc:  # noqa: BLE001 - reported to the caller as Lambda does
            traceback.print_exc()
            reply = {"error": _error_payload(exc)}
        else:
            reply = {"result": result}
        try:
            encoded = json.dumps(reply).encode()
        except (TypeError, ValueError) as exc:
            error = _error_payload(exc, "Runtime.MarshalError", f"Unable to marshal response: {exc}")
            encoded = json.dumps({"error": error}).encode()
        channel.send_bytes(encoded)


def _apply_migrations(channel: Connection) -> int:
    parameters = json.loads(channel.recv_bytes())
    try:
        import pg8000.native

        module_name, _, attribute = MIGRATIONS_CALL.rpartition(".")
        apply = getattr(importlib.import_module(module_name), attribute)
        connection = pg8000.native.Connection(**parameters)
        try:
            applied = apply(connection)
        finally:
            connection.close()
        reply: dict[str, Any] = {"result": [str(version) for version in applied or []]}
    except Exception as exc:  # noqa: BLE001 - reported to the parent with the traceback
        reply = {"error": _error_payload(exc)}
    channel.send_bytes(json.dumps(reply).encode())
    return 0 if "result" in reply else 1


def _worker_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Local Lambda worker (started by local_stack.runtime)")
    parser.add_argument("command", choices=["serve", "apply-migrations"])
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--path", action="append", default=[])
    parser.add_argument("--site", action="append", default=[])
    parser.add_argument("--handler", default=DEFAULT_HANDLER)
    parser.add_argument("--function-arn", default="")
    arguments = parser.parse_args(argv)
    # Ctrl-C in the terminal reaches the whole process group; the parent decides when
    # workers stop (it closes their connection).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _set_import_path(arguments.path, arguments.site)
    channel = Connection(arguments.fd)
    if arguments.command == "serve":
        return _serve(channel, arguments.handler, arguments.function_arn)
    return _apply_migrations(channel)


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
