-- A finding's idempotency key is the key of the ledger entry that records it (the store checks
-- this on every commit), so the ledger's unique index already makes it unique. The findings
-- table's own unique index on it only doubled the cost of every insert. The table is rebuilt
-- without it, clustered on its id (ids are time-ordered, so inserts append).
CREATE TABLE findings_v5 (
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
    idempotency_key     TEXT    NOT NULL,
    seq                 INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO findings_v5 (id, case_id, source, finding_type, severity, confidence_bp,
                         subject_system, subject_external_id, observed_us, evidence,
                         idempotency_key, seq)
    SELECT id, case_id, source, finding_type, severity, confidence_bp, subject_system,
           subject_external_id, observed_us, evidence, idempotency_key, seq
    FROM findings;
DROP TABLE findings;
ALTER TABLE findings_v5 RENAME TO findings;
CREATE INDEX findings_by_case ON findings (case_id);
