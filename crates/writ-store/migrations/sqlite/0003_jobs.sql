-- Write-back jobs, projected from the ledger (each job event carries the job's snapshot).
CREATE TABLE jobs (
    id              BLOB     PRIMARY KEY,
    case_id         BLOB     NOT NULL,
    system          TEXT   NOT NULL,
    state           TEXT   NOT NULL,
    next_attempt_us INTEGER,
    snapshot        TEXT   NOT NULL,
    created_seq     INTEGER     NOT NULL,
    updated_seq     INTEGER     NOT NULL
);
CREATE INDEX jobs_pending ON jobs (state, updated_seq);
CREATE INDEX jobs_by_case ON jobs (case_id);
