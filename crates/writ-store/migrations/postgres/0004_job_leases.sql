-- Leases on write-back jobs: which worker works a job, and until when. Operational state, not
-- a projection of the ledger (a rebuild leaves it alone): an expired lease is free for any
-- worker, so a job whose worker died is taken over once its lease runs out.
CREATE TABLE job_leases (
    job_id     UUID   PRIMARY KEY,
    holder     TEXT   NOT NULL,
    expires_us BIGINT NOT NULL
);
