-- The webhook outbox: a notification is written in the same transaction as the event that
-- calls for it, then delivered (with retries) by a worker on whichever replica claims it.
-- Operational state, not a projection: it is not rebuilt from the ledger.
CREATE TABLE webhook_outbox (
    id              TEXT    PRIMARY KEY,
    endpoint        TEXT    NOT NULL,
    seq             BIGINT  NOT NULL,
    kind            TEXT    NOT NULL,
    payload         TEXT    NOT NULL,
    created_us      BIGINT  NOT NULL,
    state           TEXT    NOT NULL,
    attempts        BIGINT  NOT NULL,
    next_attempt_us BIGINT,
    lease_holder    TEXT,
    lease_until_us  BIGINT,
    last_status     BIGINT,
    last_error      TEXT
);
CREATE INDEX webhook_outbox_due ON webhook_outbox (state, next_attempt_us);

-- Every delivery attempt, as it went.
CREATE TABLE webhook_deliveries (
    outbox_id TEXT    NOT NULL,
    attempt   BIGINT  NOT NULL,
    at_us     BIGINT  NOT NULL,
    status    BIGINT,
    error     TEXT,
    PRIMARY KEY (outbox_id, attempt)
);

-- Endpoints that answered 410 Gone: nothing more is sent to them.
CREATE TABLE webhook_endpoints_disabled (
    name     TEXT   PRIMARY KEY,
    reason   TEXT   NOT NULL,
    at_us    BIGINT NOT NULL
);
