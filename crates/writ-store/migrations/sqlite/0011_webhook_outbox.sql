-- The webhook outbox: a notification is written in the same transaction as the event that
-- calls for it, then delivered (with retries) by a worker on whichever replica claims it.
-- Operational state, not a projection: it is not rebuilt from the ledger.
CREATE TABLE webhook_outbox (
    id              TEXT    PRIMARY KEY,
    endpoint        TEXT    NOT NULL,
    seq             INTEGER  NOT NULL,
    kind            TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    created_us      INTEGER  NOT NULL,
    state           TEXT    NOT NULL,
    attempts        INTEGER  NOT NULL,
    next_attempt_us INTEGER,
    lease_holder    TEXT,
    lease_until_us  INTEGER,
    last_status     INTEGER,
    last_error      TEXT
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (state, next_attempt_us);

-- Every delivery attempt, as it went.
CREATE TABLE webhook_deliveries (
    outbox_id TEXT    NOT NULL,
    attempt   INTEGER  NOT NULL,
    at_us     INTEGER  NOT NULL,
    status    INTEGER,
    error     TEXT,
    PRIMARY KEY (outbox_id, attempt)
);

-- Endpoints that answered 410 Gone: nothing more is sent to them.
CREATE TABLE webhook_endpoints_disabled (
    name     TEXT   PRIMARY KEY,
    reason   TEXT   NOT NULL,
    at_us    INTEGER NOT NULL
);
