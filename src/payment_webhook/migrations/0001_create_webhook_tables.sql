-- Events as received, one row per provider event id, and the current state of each payment intent.
-- Applied by payment_webhook.dal.migrations inside one transaction.

CREATE TABLE webhook_events (
    event_id         text        PRIMARY KEY CHECK (char_length(event_id) BETWEEN 1 AND 255),
    event_type       text        NOT NULL CHECK (char_length(event_type) BETWEEN 1 AND 255),
    -- The event's "created" field: when the provider created the event.
    event_created_at timestamptz NOT NULL,
    livemode         boolean,
    -- The verified request body, parsed by PostgreSQL from the raw text.
    payload          jsonb       NOT NULL,
    received_at      timestamptz NOT NULL DEFAULT now()
);

-- No index besides the primary key, because nothing in the product looks events up by another
-- column and each index adds to the WAL of every insert. Add one together with the query that needs it.

CREATE TABLE payments (
    payment_intent_id       text        PRIMARY KEY CHECK (char_length(payment_intent_id) BETWEEN 1 AND 255),
    -- NULL until a payment_intent.* event arrives (a charge.refunded event may come first).
    status                  text,
    -- Lifecycle order of status within one second; see payment_webhook.logic.payments.
    status_rank             smallint,
    -- The "created" time of the event that set status; an older event never overwrites it.
    status_event_created_at timestamptz,
    amount                  bigint      CHECK (amount >= 0),
    currency                text,
    customer                text,
    amount_refunded         bigint      NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0),
    last_event_id           text        NOT NULL,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payments_status_complete CHECK (
        (status IS NULL AND status_rank IS NULL AND status_event_created_at IS NULL)
        OR (status IS NOT NULL AND status_rank IS NOT NULL AND status_event_created_at IS NOT NULL)
    )
);
