"""A real PostgreSQL server on 127.0.0.1 for the local stack and the tests.

By default the server is the PostgreSQL 16 that the pip package pgserver ships. It gets
its own data folder and a TCP listener on a free loopback port, so the function connects
by host and port as it does to RDS. When ``DATABASE_URL`` is set, that server is
used instead and nothing is started or stopped.

PostgreSQL refuses to run as root, so when this process is root the server runs as the
system user ``pgserver`` (created on first use, as pgserver itself does).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pg8000.native

logger = logging.getLogger(__name__)

SERVER_SYSTEM_USER = "pgserver"
SUPERUSER = "postgres"
START_TIMEOUT_SECONDS = 30


class PostgresError(RuntimeError):
    """The local PostgreSQL server could not be started, stopped or set up."""


@dataclass(frozen=True)
class DatabaseInfo:
    """Connection details of one database and the login role that owns it."""

    host: str
    port: int
    name: str
    username: str
    password: str

    def secret_json(self) -> dict[str, str]:
        """Return the credentials in the shape RDS writes its managed secret."""
        return {"username": self.username, "password": self.password}


def find_free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def _pgserver_bin_dir() -> Path:
    """Return the folder of PostgreSQL programs inside the pgserver package, without importing it.

    Importing pgserver itself would create its runtime folders and lock files, which
    this module does not use.
    """
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresError("pgserver is not installed: run 'make venv', or set DATABASE_URL to a server of your own")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    """Return the system user ``name``, creating it (with no login shell) when missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--shell", "/usr/sbin/nologin", name], check=True, capture_output=True)
        return pwd.getpwnam(name)


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class PostgresServer:
    """Administer one PostgreSQL server: create databases and roles, and (when owned) stop and start it.

    Subclasses decide where the server comes from. The admin connection uses a superuser
    (or a role with CREATEDB and CREATEROLE when ``DATABASE_URL`` names the server).
    """

    host: str
    port: int
    admin_user: str
    admin_password: str
    admin_database: str
    can_restart: bool = False

    def connect_admin(self, database: str | None = None) -> pg8000.native.Connection:
        """Open an autocommit connection as the admin role."""
        return pg8000.native.Connection(
            user=self.admin_user,
            password=self.admin_password or None,
            host=self.host,
            port=self.port,
            database=database or self.admin_database,
            timeout=10,
        )

    def create_database(self, name: str, username: str | None = None) -> DatabaseInfo:
        """Create an empty database owned by a new login role with a random password.

        Parameters
        ----------
        name:
            Database name; the caller makes it unique (tests add a random suffix).
        username:
            Login role to create; defaults to ``<name>_owner``.

        Returns
        -------
        DatabaseInfo
            Host, port, database and the owner's credentials.
        """
        username = username or f"{name}_owner"
        password = secrets.token_urlsafe(24)
        admin = self.connect_admin()
        try:
            admin.run(f"CREATE ROLE {_quote_identifier(username)} LOGIN PASSWORD {_quote_literal(password)}")
            admin.run(f"CREATE DATABASE {_quote_identifier(name)} OWNER {_quote_identifier(username)}")
        finally:
            admin.close()
        return DatabaseInfo(self.host, self.port, name, username, password)

    def set_password(self, username: str, password: str) -> None:
        """Change a role's password, as a rotation of the RDS-managed secret does."""
        admin = self.connect_admin()
        try:
            admin.run(f"ALTER ROLE {_quote_identifier(username)} PASSWORD {_quote_literal(password)}")
        finally:
            admin.close()

    def terminate_connections(self, database: str) -> int:
        """Terminate every other session on ``database`` and return how many were ended."""
        admin = self.connect_admin()
        try:
            rows = admin.run(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :database AND pid <> pg_backend_pid()",
                database=database,
            )
        finally:
            admin.close()
        return len(rows)

    def drop_database(self, info: DatabaseInfo) -> None:
        """Drop a database made by :meth:`create_database` and its owner role."""
        admin = self.connect_admin()
        try:
            admin.run(f"DROP DATABASE IF EXISTS {_quote_identifier(info.name)} WITH (FORCE)")
            admin.run(f"DROP ROLE IF EXISTS {_quote_identifier(info.username)}")
        finally:
            admin.close()

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class EmbeddedPostgres(PostgresServer):
    """PostgreSQL 16 from the pgserver package, listening on 127.0.0.1 only.

    The data folder is created on first start and reused after that. Clients must
    authenticate with scram-sha-256, as they do against RDS, so the superuser password is
    kept beside the data folder in ``<data_dir>.superuser-password`` (mode 0600).
    """

    can_restart = True

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.bin_dir = _pgserver_bin_dir()
        self.data_dir = data_dir.resolve()
        self.host = "127.0.0.1"
        self.port = port or find_free_port(self.host)
        self.admin_user = SUPERUSER
        self.admin_database = "postgres"
        self.socket_dir = self.data_dir / "socket"
        self.log_file = self.data_dir.parent / f"{self.data_dir.name}.log"
        self._password_file = self.data_dir.parent / f"{self.data_dir.name}.superuser-password"
        self._system_user = SERVER_SYSTEM_USER if os.geteuid() == 0 else None
        self.admin_password = ""

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / program), *args]
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            user=self._system_user,
            timeout=START_TIMEOUT_SECONDS + 10,
            check=False,
        )
        if result.returncode != 0:
            log_tail = self._log_tail()
            raise PostgresError(
                f"{program} failed with exit code {result.returncode}: {result.stderr.strip()}"
                f"{log_tail}"
            )
        return result

    def _log_tail(self) -> str:
        if not self.log_file.exists():
            return ""
        lines = self.log_file.read_text(errors="replace").splitlines()[-15:]
        return f"\nLast lines of {self.log_file}:\n" + "\n".join(lines)

    def _give_to_server_user(self, *paths: Path) -> None:
        """Make ``paths`` owned by the unprivileged server user when this process is root."""
        if self._system_user is None:
            return
        entry = _ensure_system_user(self._system_user)
        # The server user must be able to traverse every parent folder of the data folder.
        for parent in self.data_dir.parents:
            parent.chmod(parent.stat().st_mode | stat.S_IXOTH | stat.S_IXGRP)
        for path in paths:
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        self.admin_password = secrets.token_urlsafe(24)
        self._password_file.write_text(self.admin_password)
        self._password_file.chmod(0o600)
        # initdb runs as the server user, so it gets its own copy of the password file.
        pwfile = self.data_dir / ".initdb-password"
        pwfile.write_text(self.admin_password)
        pwfile.chmod(0o600)
        self._give_to_server_user(self.data_dir, pwfile)
        try:
            self._run(
                "initdb",
                "-D", str(self.pgdata),
                "-U", SUPERUSER,
                "--pwfile", str(pwfile),
                "--auth-local=scram-sha-256",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    def start(self) -> None:
        """Initialise the data folder if needed and start the server; wait until it accepts connections."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not (self.pgdata / "PG_VERSION").exists():
            logger.info("initialising PostgreSQL data folder %s", self.pgdata)
            self._initdb()
        else:
            self.admin_password = self._password_file.read_text().strip()
        self._stop_leftover_server()
        self.socket_dir.mkdir(exist_ok=True)
        self.log_file.touch()
        self._give_to_server_user(self.data_dir, self.socket_dir, self.log_file)
        self._run(
            "pg_ctl",
            "-D", str(self.pgdata),
            "-l", str(self.log_file),
            "-w",
            "-t", str(START_TIMEOUT_SECONDS),
            "-o", f"-h 127.0.0.1 -p {self.port} -k {self.socket_dir} -c max_connections=200",
            "start",
        )
        logger.info("PostgreSQL listening on %s:%s", self.host, self.port)

    def _stop_leftover_server(self) -> None:
        """Stop a server that a killed run left on this data folder, so this start can bind its port."""
        if not (self.pgdata / "postmaster.pid").exists():
            return
        status = subprocess.run(
            [str(self.bin_dir / "pg_ctl"), "-D", str(self.pgdata), "status"],
            capture_output=True,
            text=True,
            user=self._system_user,
            timeout=10,
            check=False,
        )
        # pg_ctl status exits 0 while a server runs on the data folder, 3 when none does.
        if status.returncode == 0:
            logger.warning("stopping a PostgreSQL server left running on %s by an earlier run", self.pgdata)
            self.stop(mode="fast")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``mode`` is pg_ctl's shutdown mode (smart, fast or immediate)."""
        if not (self.pgdata / "postmaster.pid").exists():
            return
        self._run("pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "stop")
        logger.info("PostgreSQL on port %s stopped", self.port)

    def remove(self) -> None:
        """Stop the server and delete its data folder."""
        self.stop(mode="immediate")
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.log_file.unlink(missing_ok=True)
        self._password_file.unlink(missing_ok=True)


class ExternalPostgres(PostgresServer):
    """A server that ``DATABASE_URL`` names; it is neither started nor stopped here.

    The URL's role needs CREATEDB and CREATEROLE (a superuser has both), because each
    test run creates its own database and login role on it.
    """

    can_restart = False

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("postgres", "postgresql"):
            raise PostgresError(
                f"DATABASE_URL scheme '{parts.scheme}' is not supported: use postgresql://user:password@host:port/database"
            )
        if not parts.hostname:
            raise PostgresError("DATABASE_URL has no host: use postgresql://user:password@host:port/database")
        self.host = parts.hostname
        self.port = parts.port or 5432
        self.admin_user = unquote(parts.username or SUPERUSER)
        self.admin_password = unquote(parts.password or "")
        self.admin_database = parts.path.lstrip("/") or "postgres"

    def start(self) -> None:
        """Check that the server accepts a connection; there is nothing to start."""
        self.connect_admin().close()

    def stop(self) -> None:
        """Leave the server running: it is not ours."""


def server_from_environment(data_dir: Path) -> PostgresServer:
    """Return the server that ``DATABASE_URL`` names, or an embedded one in ``data_dir``."""
    url = os.environ.get("DATABASE_URL")
    if url:
        return ExternalPostgres(url)
    return EmbeddedPostgres(data_dir)

