-- writ schema v1 (PostgreSQL). Times are microseconds since the Unix epoch (UTC).
-- The ledger tables are the source of truth; identities, cases and findings are projections.

CREATE TABLE ledger_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    size BIGINT NOT NULL
);
INSERT INTO ledger_head (id, size) VALUES (1, 0);

CREATE TABLE ledger_entries (
    seq             BIGINT PRIMARY KEY,
    time_us         BIGINT NOT NULL,
    case_id         UUID,
    kind            TEXT   NOT NULL,
    actor           TEXT   NOT NULL,
    idempotency_key TEXT   NOT NULL UNIQUE,
    leaf            BYTEA  NOT NULL,
    leaf_hash       BYTEA  NOT NULL
);
CREATE INDEX ledger_entries_by_case ON ledger_entries (case_id, seq);

CREATE TABLE checkpoints (
    size    BIGINT PRIMARY KEY,
    root    BYTEA  NOT NULL,
    note    TEXT   NOT NULL,
    time_us BIGINT NOT NULL
);

CREATE TABLE evidence (
    digest      TEXT   PRIMARY KEY,
    media_type  TEXT   NOT NULL,
    bytes       BYTEA  NOT NULL,
    received_us BIGINT NOT NULL
);

CREATE TABLE identities (
    id            UUID    PRIMARY KEY,
    system        TEXT    NOT NULL,
    external_id   TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    owner_team    TEXT,
    criticality   TEXT    NOT NULL,
    privileged    BOOLEAN NOT NULL,
    tags          TEXT    NOT NULL,
    last_used_us  BIGINT,
    reconciled_us BIGINT,
    updated_seq   BIGINT  NOT NULL,
    UNIQUE (system, external_id)
);

CREATE TABLE cases (
    id                UUID    PRIMARY KEY,
    identity_id       UUID,
    subject           TEXT    NOT NULL,
    finding_type      TEXT    NOT NULL,
    state             TEXT    NOT NULL,
    compliance_closed BOOLEAN NOT NULL,
    opened_seq        BIGINT  NOT NULL,
    updated_seq       BIGINT  NOT NULL
);
CREATE INDEX cases_open_by_subject ON cases (subject, finding_type) WHERE state <> 'closed';

CREATE TABLE findings (
    id                  UUID    PRIMARY KEY,
    case_id             UUID,
    source              TEXT    NOT NULL,
    finding_type        TEXT    NOT NULL,
    severity            TEXT    NOT NULL,
    confidence_bp       INTEGER NOT NULL,
    subject_system      TEXT    NOT NULL,
    subject_external_id TEXT    NOT NULL,
    observed_us         BIGINT  NOT NULL,
    evidence            TEXT    NOT NULL,
    idempotency_key     TEXT    NOT NULL UNIQUE,
    seq                 BIGINT  NOT NULL
);
CREATE INDEX findings_by_case ON findings (case_id);
