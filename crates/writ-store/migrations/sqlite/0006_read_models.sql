-- Read models the engine decides from, so that it never rescans a case's ledger history:
-- where the decision in force on a case is and where a job's intent (its plan and pre-image)
-- is (the seqs of their entries, read from the ledger), and the votes for the decision. All are projected from the ledger in the same transaction as their event and
-- rebuilt by `writ admin rebuild` (run it once after upgrading a database that has cases).
ALTER TABLE cases ADD COLUMN decision_seq INTEGER;
ALTER TABLE jobs ADD COLUMN intent_seq INTEGER;

CREATE TABLE case_votes (
    case_id      BLOB    NOT NULL,
    decision_seq INTEGER NOT NULL,
    approver     TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    PRIMARY KEY (case_id, decision_seq, approver)
);

-- A case has at most one job in the worker's hands.
CREATE UNIQUE INDEX jobs_one_live_per_case ON jobs (case_id)
    WHERE state IN ('queued', 'intent', 'applied', 'rollback_intent');
