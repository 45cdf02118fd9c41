-- Write-back jobs, projected from the ledger (each job event carries the job's snapshot).
CREATE TABLE jobs (
    id              UUID     PRIMARY KEY,
    case_id         UUID     NOT NULL,
    system          TEXT   NOT NULL,
    state           TEXT   NOT NULL,
    next_attempt_us BIGINT,
    snapshot        TEXT   NOT NULL,
    created_seq     BIGINT     NOT NULL,
    updated_seq     BIGINT     NOT NULL
);
CREATE INDEX jobs_pending ON jobs (state, updated_seq);
CREATE INDEX jobs_by_case ON jobs (case_id);
