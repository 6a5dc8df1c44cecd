"""PostgreSQL connections with pg8000: credentials from the cached secret, short timeouts, TLS.

pg8000 is imported inside the functions, because only a verified event needs the database
and the import would otherwise count against every cold start.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from payment_webhook.config import DatabaseSettings
from payment_webhook.dal.secrets import DatabaseCredentialsCache
from payment_webhook.deadline import Deadline
from payment_webhook.errors import DatabaseAuthenticationFailed, DatabaseUnavailable

if TYPE_CHECKING:
    import ssl

    import pg8000.native

logger = logging.getLogger(__name__)

APPLICATION_NAME = "payment-webhook"
# Each webhook statement touches two rows by primary key; 3 s leaves room in a 10 s
# invocation for a reconnect and the retry.
WEBHOOK_STATEMENT_TIMEOUT_MS = 3000

# invalid_authorization_specification and invalid_password: RDS rotated the password.
AUTHENTICATION_FAILURE_SQLSTATES = frozenset({"28000", "28P01"})
# admin_shutdown, crash_shutdown, cannot_connect_now: the server ended the session.
_SESSION_ENDED_SQLSTATES = frozenset({"57P01", "57P02", "57P03"})
# Classes whose errors are transient server conditions, not mistakes in the statement:
# connection exception, transaction rollback, insufficient resources, operator intervention.
_TRANSIENT_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "57"})


def sqlstate_of(exc: BaseException) -> str | None:
    """Return the SQLSTATE of a pg8000 ``DatabaseError``, or None for any other exception."""
    details = exc.args[0] if exc.args else None
    if isinstance(details, dict):
        code = details.get("C")
        return code if isinstance(code, str) else None
    return None


def describe_database_error(exc: BaseException) -> str:
    """Return ``SQLSTATE: message`` for a server error, or the exception text (with its cause) otherwise."""
    details = exc.args[0] if exc.args else None
    if isinstance(details, dict):
        return f"{details.get('C', '?')}: {details.get('M', '')}"
    text = str(exc) or type(exc).__name__
    if exc.__cause__ is not None:
        text += f" ({exc.__cause__})"
    return text


def open_connection(
    settings: DatabaseSettings,
    credentials: DatabaseCredentialsCache,
    deadline: Deadline,
    *,
    startup_parameters: dict[str, str] | None = None,
    application_name: str = APPLICATION_NAME,
) -> pg8000.native.Connection:
    """Open an autocommit connection, re-reading the secret once if the database rejects the password.

    Parameters
    ----------
    settings:
        Host, port, database name, TLS mode and connect timeout.
    credentials:
        Cache of the database secret.
    deadline:
        The connect timeout is cut to the time left.
    startup_parameters:
        Server settings for the session, such as ``{"statement_timeout": "3000"}``.
    application_name:
        Shown in ``pg_stat_activity``.

    Returns
    -------
    pg8000.native.Connection
        An open connection; each statement commits on its own unless it runs inside BEGIN.

    Raises
    ------
    DatabaseAuthenticationFailed
        The password was rejected with the cached and with the freshly read secret.
    DatabaseUnavailable
        The server is unreachable, timed out, or refused the session.
    SecretStoreError
        The database secret could not be read.
    """
    try:
        return _connect(settings, credentials, deadline, startup_parameters, application_name)
    except DatabaseAuthenticationFailed:
        logger.warning(
            "database rejected the credentials, reading the database secret again",
            extra={"db_host": settings.host, "db_name": settings.name},
        )
    credentials.refresh(deadline)
    return _connect(settings, credentials, deadline, startup_parameters, application_name)


def _connect(
    settings: DatabaseSettings,
    credentials_cache: DatabaseCredentialsCache,
    deadline: Deadline,
    startup_parameters: dict[str, str] | None,
    application_name: str,
) -> pg8000.native.Connection:
    import pg8000.native

    credentials = credentials_cache.get(deadline)
    target = f"{settings.host}:{settings.port}/{settings.name}"
    timeout = deadline.timeout(settings.connect_timeout_seconds, f"connection to database {target}")
    try:
        return pg8000.native.Connection(
            user=credentials.username,
            password=credentials.password,
            host=settings.host,
            port=settings.port,
            database=settings.name,
            timeout=timeout,
            ssl_context=_ssl_context(settings.sslmode),
            application_name=application_name,
            startup_params=startup_parameters,
        )
    except pg8000.native.DatabaseError as exc:
        sqlstate = sqlstate_of(exc)
        if sqlstate in AUTHENTICATION_FAILURE_SQLSTATES:
            raise DatabaseAuthenticationFailed(
                f"database {target} rejected the credentials of user {credentials.username} ({sqlstate})"
            ) from exc
        raise DatabaseUnavailable(f"database {target} refused the connection: {describe_database_error(exc)}") from exc
    except (pg8000.native.InterfaceError, OSError) as exc:
        raise DatabaseUnavailable(f"cannot connect to database {target}: {describe_database_error(exc)}") from exc


def _ssl_context(sslmode: str) -> ssl.SSLContext | bool:
    # pg8000 takes False as "never TLS". None would mean "try TLS, fall back to plain".
    if sslmode == "disable":
        return False
    import ssl

    # A bare client context skips loading the system CA bundle (about 25 ms at cold
    # start), which CERT_NONE would not use anyway.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # NOTE: DB_SSLMODE=require encrypts but does not verify the server certificate, as
    # libpq's sslmode=require. Verifying (verify-full) needs the RDS CA bundle in the
    # deployment package and the endpoint name checked against the certificate.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def is_connection_lost(exc: BaseException) -> bool:
    """Return whether ``exc`` means the session is gone and the connection must be replaced."""
    import pg8000.native

    if isinstance(exc, pg8000.native.InterfaceError | OSError):
        return True
    sqlstate = sqlstate_of(exc)
    return sqlstate is not None and (sqlstate.startswith("08") or sqlstate in _SESSION_ENDED_SQLSTATES)


def is_transient_server_error(exc: BaseException) -> bool:
    """Return whether ``exc`` is a server condition (timeout, overload, shutdown) rather than a bad statement."""
    sqlstate = sqlstate_of(exc)
    return sqlstate is not None and (sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES or sqlstate == "57014")


class ConnectionManager:
    """One connection kept across invocations, with the webhook's statements prepared on it.

    The connection is opened on first use and replaced when a statement finds it broken.
    Statements are prepared once per connection, so running one costs a single round trip.

    Parameters
    ----------
    settings:
        Database settings.
    credentials:
        Cache of the database secret.
    statement_timeout_ms:
        Server-side ``statement_timeout`` of the session.
    """

    def __init__(
        self,
        settings: DatabaseSettings,
        credentials: DatabaseCredentialsCache,
        *,
        statement_timeout_ms: int = WEBHOOK_STATEMENT_TIMEOUT_MS,
    ) -> None:
        self._settings = settings
        self._credentials = credentials
        self._statement_timeout_ms = statement_timeout_ms
        self._connection: pg8000.native.Connection | None = None
        self._prepared: dict[str, Any] = {}

    @property
    def is_connected(self) -> bool:
        """Whether a connection is open (it may still turn out to be broken)."""
        return self._connection is not None

    def run(self, sql: str, deadline: Deadline, **parameters: Any) -> list[list[Any]]:
        """Run one idempotent statement and return its rows.

        When the connection turns out to be broken, it is replaced and the statement is
        run once more. That is safe only for statements whose second run changes nothing
        the first one did not, which every statement of ``dal.events`` is.

        Raises
        ------
        DatabaseUnavailable
            The connection could not be opened, broke twice, or the server reported a
            transient condition (timeout, shutdown, overload).
        SecretStoreError
            The database secret could not be read.
        pg8000.native.DatabaseError
            The statement itself failed, which is a bug, not an outage.
        """
        for attempt in (1, 2):
            connection = self._connection or self._open(deadline)
            try:
                statement = self._prepared.get(sql)
                if statement is None:
                    statement = connection.prepare(sql)
                    self._prepared[sql] = statement
                return statement.run(**parameters)
            except Exception as exc:
                if is_connection_lost(exc):
                    self.close()
                    # NOTE: when the first run committed and only its result was lost, the
                    # retry finds the event row and the delivery is reported as "duplicate".
                    if attempt == 1:
                        logger.warning(
                            "database connection lost, reconnecting to run the statement again",
                            extra={"error": describe_database_error(exc)},
                        )
                        continue
                    raise DatabaseUnavailable(
                        f"database connection lost twice: {describe_database_error(exc)}"
                    ) from exc
                if is_transient_server_error(exc):
                    raise DatabaseUnavailable(
                        f"database could not run the statement: {describe_database_error(exc)}"
                    ) from exc
                raise
        raise AssertionError("unreachable: the loop returns or raises")

    def close(self) -> None:
        """Close the connection; errors from closing a broken connection are logged at debug level."""
        connection, self._connection = self._connection, None
        self._prepared = {}
        if connection is None:
            return
        try:
            connection.close()
        except Exception as exc:  # noqa: BLE001 - a broken socket cannot be closed cleanly
            logger.debug("closing a broken database connection failed", extra={"error": str(exc)})

    def _open(self, deadline: Deadline) -> pg8000.native.Connection:
        self._connection = open_connection(
            self._settings,
            self._credentials,
            deadline,
            startup_parameters={"statement_timeout": str(self._statement_timeout_ms)},
        )
        return self._connection
