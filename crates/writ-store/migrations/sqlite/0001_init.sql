-- writ schema v1 (SQLite). Times are microseconds since the Unix epoch (UTC).
-- The ledger tables are the source of truth; identities, cases and findings are projections.

CREATE TABLE ledger_head (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    size INTEGER NOT NULL
);
INSERT INTO ledger_head (id, size) VALUES (1, 0);

CREATE TABLE ledger_entries (
    seq             INTEGER PRIMARY KEY,
    time_us         INTEGER NOT NULL,
    case_id         BLOB,
    kind            TEXT    NOT NULL,
    actor           TEXT    NOT NULL,
    idempotency_key TEXT    NOT NULL UNIQUE,
    leaf            BLOB    NOT NULL,
    leaf_hash       BLOB    NOT NULL
);
CREATE INDEX ledger_entries_by_case ON ledger_entries (case_id, seq);

CREATE TABLE checkpoints (
    size    INTEGER PRIMARY KEY,
    root    BLOB    NOT NULL,
    note    TEXT    NOT NULL,
    time_us INTEGER NOT NULL
);

CREATE TABLE evidence (
    digest      TEXT    PRIMARY KEY,
    media_type  TEXT    NOT NULL,
    bytes       BLOB    NOT NULL,
    received_us INTEGER NOT NULL
);

CREATE TABLE identities (
    id            BLOB    PRIMARY KEY,
    system        TEXT    NOT NULL,
    external_id   TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    owner_team    TEXT,
    criticality   TEXT    NOT NULL,
    privileged    INTEGER NOT NULL,
    tags          TEXT    NOT NULL,
    last_used_us  INTEGER,
    reconciled_us INTEGER,
    updated_seq   INTEGER NOT NULL,
    UNIQUE (system, external_id)
);

CREATE TABLE cases (
    id                BLOB    PRIMARY KEY,
    identity_id       BLOB,
    subject           TEXT    NOT NULL,
    finding_type      TEXT    NOT NULL,
    state             TEXT    NOT NULL,
    compliance_closed INTEGER NOT NULL,
    opened_seq        INTEGER NOT NULL,
    updated_seq       INTEGER NOT NULL
);
CREATE INDEX cases_open_by_subject ON cases (subject, finding_type) WHERE state <> 'closed';

CREATE TABLE findings (
    id                  BLOB    PRIMARY KEY,
    case_id             BLOB,
    source              TEXT    NOT NULL,
    finding_type        TEXT    NOT NULL,
    severity            TEXT    NOT NULL,
    confidence_bp       INTEGER NOT NULL,
    subject_system      TEXT    NOT NULL,
    subject_external_id TEXT    NOT NULL,
    observed_us         INTEGER NOT NULL,
    evidence            TEXT    NOT NULL,
    idempotency_key     TEXT    NOT NULL UNIQUE,
    seq                 INTEGER NOT NULL
);
CREATE INDEX findings_by_case ON findings (case_id);
