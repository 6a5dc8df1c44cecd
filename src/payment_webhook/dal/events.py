"""The SQL that stores an event and the payment update it implies.

Each event is stored by ONE statement, run in autocommit, so the event row and the payment
update commit together in a single round trip. The statement inserts the event with
``ON CONFLICT DO NOTHING``. Its payment part selects from that insert's ``RETURNING``, so
a duplicate event changes nothing, also when it is delivered concurrently.
Running a statement twice is therefore harmless, which is what lets the connection
manager retry it on a new connection.

A data exception (SQLSTATE class 22) raised by the statement comes from the values, such as
a payload that PostgreSQL's jsonb parser rejects although the validation passed it. A retry
of the same delivery would fail the same way, so it is raised as ``InvalidEvent`` (400),
not as an outage (503). The statement failed as a whole, so nothing was written.
"""

from __future__ import annotations

import logging
from typing import Any

from payment_webhook.dal.connection import ConnectionManager, sqlstate_of
from payment_webhook.deadline import Deadline
from payment_webhook.errors import InvalidEvent
from payment_webhook.models.event import PaymentIntentUpdate, RefundUpdate, WebhookEvent
from payment_webhook.models.outcome import StoreOutcome, StoreResult

logger = logging.getLogger(__name__)

DATA_EXCEPTION_SQLSTATE_CLASS = "22"

_INSERT_EVENT = """
    INSERT INTO webhook_events (event_id, event_type, event_created_at, livemode, payload)
    VALUES (
        CAST(:event_id AS text),
        CAST(:event_type AS text),
        to_timestamp(CAST(:created AS bigint)),
        CAST(:livemode AS boolean),
        CAST(:payload AS jsonb)
    )
    ON CONFLICT (event_id) DO NOTHING
    RETURNING event_id
"""

STORE_EVENT_SQL = f"""
WITH inserted AS ({_INSERT_EVENT})
SELECT EXISTS (SELECT 1 FROM inserted) AS event_inserted, false AS payment_changed
"""

# The WHERE clause keeps a payment from moving backwards: the update applies only when the
# new (created, rank) pair is greater than the stored one. A row that a refund created
# has no status yet, so any status applies to it.
STORE_PAYMENT_INTENT_EVENT_SQL = f"""
WITH inserted AS ({_INSERT_EVENT}),
payment AS (
    INSERT INTO payments AS p (
        payment_intent_id, status, status_rank, status_event_created_at,
        amount, currency, customer, last_event_id
    )
    SELECT
        CAST(:payment_intent_id AS text),
        CAST(:status AS text),
        CAST(:status_rank AS smallint),
        to_timestamp(CAST(:created AS bigint)),
        CAST(:amount AS bigint),
        CAST(:currency AS text),
        CAST(:customer AS text),
        inserted.event_id
    FROM inserted
    ON CONFLICT (payment_intent_id) DO UPDATE
    SET status = EXCLUDED.status,
        status_rank = EXCLUDED.status_rank,
        status_event_created_at = EXCLUDED.status_event_created_at,
        amount = EXCLUDED.amount,
        currency = EXCLUDED.currency,
        customer = EXCLUDED.customer,
        last_event_id = EXCLUDED.last_event_id,
        updated_at = now()
    WHERE p.status_event_created_at IS NULL
       OR (p.status_event_created_at, p.status_rank)
          < (EXCLUDED.status_event_created_at, EXCLUDED.status_rank)
    RETURNING p.payment_intent_id
)
SELECT EXISTS (SELECT 1 FROM inserted) AS event_inserted, EXISTS (SELECT 1 FROM payment) AS payment_changed
"""

# amount_refunded is the charge's running total, so the larger value is the newer one,
# whatever order the events arrive in.
STORE_REFUND_EVENT_SQL = f"""
WITH inserted AS ({_INSERT_EVENT}),
payment AS (
    INSERT INTO payments AS p (payment_intent_id, amount_refunded, last_event_id)
    SELECT CAST(:payment_intent_id AS text), CAST(:amount_refunded AS bigint), inserted.event_id
    FROM inserted
    ON CONFLICT (payment_intent_id) DO UPDATE
    SET amount_refunded = GREATEST(p.amount_refunded, EXCLUDED.amount_refunded),
        last_event_id = EXCLUDED.last_event_id,
        updated_at = now()
    WHERE p.amount_refunded < EXCLUDED.amount_refunded
    RETURNING p.payment_intent_id
)
SELECT EXISTS (SELECT 1 FROM inserted) AS event_inserted, EXISTS (SELECT 1 FROM payment) AS payment_changed
"""


class EventStore:
    """Stores verified events through a ``ConnectionManager``."""

    def __init__(self, connections: ConnectionManager) -> None:
        self._connections = connections

    def store(self, event: WebhookEvent, deadline: Deadline) -> StoreResult:
        """Insert the event and apply its payment update in one statement.

        Parameters
        ----------
        event:
            A verified, validated event.
        deadline:
            Cuts the timeout of a reconnect.

        Returns
        -------
        StoreResult
            ``STORED`` when the event row is new, ``DUPLICATE`` when it already existed
            (then nothing changed), and whether a payments row was inserted or changed.

        Raises
        ------
        InvalidEvent
            PostgreSQL rejected a value of the event with a data exception; nothing was written.
        DatabaseUnavailable
            The statement could not run; nothing was written.
        SecretStoreError
            The database secret could not be read.
        """
        import pg8000.native

        sql, parameters = statement_for(event)
        try:
            rows = self._connections.run(sql, deadline, **parameters)
        except pg8000.native.DatabaseError as exc:
            sqlstate = sqlstate_of(exc)
            if sqlstate is None or not sqlstate.startswith(DATA_EXCEPTION_SQLSTATE_CLASS):
                raise
            raise InvalidEvent(
                f"payload cannot be stored by PostgreSQL (SQLSTATE {sqlstate})", event_id=event.event_id
            ) from None
        event_inserted, payment_changed = rows[0]
        outcome = StoreOutcome.STORED if event_inserted else StoreOutcome.DUPLICATE
        return StoreResult(outcome=outcome, payment_changed=bool(payment_changed))


def statement_for(event: WebhookEvent) -> tuple[str, dict[str, Any]]:
    """Return the storing statement for ``event`` and its parameters.

    An event without a payment update, or with a skipped one, stores the event row only.
    """
    parameters: dict[str, Any] = {
        "event_id": event.event_id,
        "event_type": event.event_type,
        "created": event.created,
        "livemode": event.livemode,
        "payload": event.payload_text,
    }
    update = event.payment_update
    if isinstance(update, PaymentIntentUpdate):
        parameters.update(
            payment_intent_id=update.payment_intent_id,
            status=update.status,
            status_rank=update.status_rank,
            amount=update.amount,
            currency=update.currency,
            customer=update.customer,
        )
        return STORE_PAYMENT_INTENT_EVENT_SQL, parameters
    if isinstance(update, RefundUpdate):
        parameters.update(payment_intent_id=update.payment_intent_id, amount_refunded=update.amount_refunded)
        return STORE_REFUND_EVENT_SQL, parameters
    return STORE_EVENT_SQL, parameters
