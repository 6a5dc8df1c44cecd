"""Apply the plain SQL files in ``payment_webhook/migrations/`` in order, each exactly once.

Each file runs in its own transaction together with its row in ``schema_migrations``
(version, checksum, applied_at), so a file is either applied and recorded or not applied
at all. A session-level advisory lock serialises runners: a second runner waits, then
finds the files applied. A file changed after it was applied stops the run with an error
naming it, because the database no longer matches the files.

Migration files must not contain transaction control (BEGIN, COMMIT) or statements that
cannot run inside a transaction, such as CREATE INDEX CONCURRENTLY.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from payment_webhook.dal.connection import describe_database_error
from payment_webhook.errors import MigrationChecksumMismatch, MigrationError, MigrationFailed

if TYPE_CHECKING:
    import pg8000.native

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Any fixed bigint works; it only has to differ from other advisory locks on the database.
# This one is the first 8 bytes of sha256("payment_webhook.schema_migrations").
ADVISORY_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"payment_webhook.schema_migrations").digest()[:8], "big", signed=True
)
MIGRATION_FILE_PATTERN = re.compile(r"(?P<number>[0-9]{4})_[a-z0-9_]+\.sql")

CREATE_SCHEMA_MIGRATIONS_SQL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    text        PRIMARY KEY,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True)
class Migration:
    """One migration file: ``version`` is the file name without ``.sql``."""

    version: str
    path: Path
    sql: str = field(repr=False)
    checksum: str


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Read the migration files of ``directory`` in version order.

    Raises
    ------
    MigrationError
        A ``.sql`` file is not named ``NNNN_lowercase_words.sql``, or two files share a number.
    """
    migrations: list[Migration] = []
    numbers: dict[str, str] = {}
    for path in sorted(directory.glob("*.sql")):
        match = MIGRATION_FILE_PATTERN.fullmatch(path.name)
        if match is None:
            raise MigrationError(
                f"migration file {path.name} is misnamed: use NNNN_lowercase_words.sql, e.g. 0002_add_index.sql"
            )
        number = match.group("number")
        if number in numbers:
            raise MigrationError(
                f"migration files {numbers[number]} and {path.name} share the number {number}: renumber one"
            )
        numbers[number] = path.name
        content = path.read_bytes()
        migrations.append(
            Migration(
                version=path.stem,
                path=path,
                sql=content.decode("utf-8"),
                checksum=hashlib.sha256(content).hexdigest(),
            )
        )
    return migrations


def apply_migrations(connection: pg8000.native.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every migration file not yet recorded in ``schema_migrations``.

    Parameters
    ----------
    connection:
        An autocommit pg8000 native connection (no transaction open) as the database owner.
    directory:
        Folder of the migration files.

    Returns
    -------
    list[str]
        Versions applied by this call, in order; empty when the schema was up to date.

    Raises
    ------
    MigrationChecksumMismatch
        An applied file has changed; nothing is applied.
    MigrationFailed
        A file's SQL failed; that file was rolled back, earlier files of this call stay applied.
    MigrationError
        A file is misnamed or two files share a number.
    """
    migrations = load_migrations(directory)
    connection.run("SELECT pg_advisory_lock(CAST(:key AS bigint))", key=ADVISORY_LOCK_KEY)
    try:
        connection.run(CREATE_SCHEMA_MIGRATIONS_SQL)
        applied = {
            version: checksum for version, checksum in connection.run("SELECT version, checksum FROM schema_migrations")
        }
        _check_applied_files_unchanged(migrations, applied)

        newly_applied: list[str] = []
        for migration in migrations:
            if migration.version in applied:
                continue
            _apply_one(connection, migration)
            newly_applied.append(migration.version)
            logger.info("migration applied", extra={"migration": migration.version})
        return newly_applied
    finally:
        _unlock(connection)


def _check_applied_files_unchanged(migrations: list[Migration], applied: dict[str, str]) -> None:
    for migration in migrations:
        recorded = applied.get(migration.version)
        if recorded is not None and recorded != migration.checksum:
            raise MigrationChecksumMismatch(
                f"migration {migration.path.name} was changed after it was applied "
                f"(recorded sha256 {recorded[:12]}..., file sha256 {migration.checksum[:12]}...): "
                "restore the file and put the change in a new migration file"
            )
    unknown = sorted(set(applied) - {migration.version for migration in migrations})
    if unknown:
        # A rollback to older code: its files are a prefix of what the database has.
        logger.warning("database has migrations that no file here defines", extra={"versions": unknown})


def _apply_one(connection: pg8000.native.Connection, migration: Migration) -> None:
    connection.run("BEGIN")
    try:
        connection.run(migration.sql)
        connection.run(
            "INSERT INTO schema_migrations (version, checksum) "
            "VALUES (CAST(:version AS text), CAST(:checksum AS text))",
            version=migration.version,
            checksum=migration.checksum,
        )
        connection.run("COMMIT")
    except Exception as exc:
        _rollback(connection)
        raise MigrationFailed(
            f"migration {migration.path.name} failed and was rolled back: {describe_database_error(exc)}"
        ) from exc


def _rollback(connection: pg8000.native.Connection) -> None:
    try:
        connection.run("ROLLBACK")
    except Exception as exc:  # noqa: BLE001 - the original error is the one to report
        logger.warning("rollback after a failed migration failed", extra={"error": describe_database_error(exc)})


def _unlock(connection: pg8000.native.Connection) -> None:
    try:
        connection.run("SELECT pg_advisory_unlock(CAST(:key AS bigint))", key=ADVISORY_LOCK_KEY)
    except Exception as exc:  # noqa: BLE001 - closing the session releases the lock anyway
        logger.warning("releasing the migration lock failed", extra={"error": describe_database_error(exc)})
