-- Exceptions (risks accepted for a while) and what cases owe by a time (deadlines the
-- scheduler acts on), projected from the ledger and rebuilt by `writ admin rebuild`.
CREATE TABLE exceptions (
    id          BLOB    PRIMARY KEY,
    case_id     BLOB    NOT NULL,
    state       TEXT    NOT NULL,
    expires_us  INTEGER NOT NULL,
    snapshot    TEXT    NOT NULL,
    granted_seq INTEGER NOT NULL,
    updated_seq INTEGER NOT NULL
);
CREATE INDEX exceptions_by_case ON exceptions (case_id, state);
CREATE INDEX exceptions_by_expiry ON exceptions (state, expires_us);

CREATE TABLE deadlines (
    case_id     BLOB    NOT NULL,
    kind        TEXT    NOT NULL,
    due_us      INTEGER NOT NULL,
    done        INTEGER NOT NULL,
    set_seq     INTEGER NOT NULL,
    updated_seq INTEGER NOT NULL,
    PRIMARY KEY (case_id, kind)
);
CREATE INDEX deadlines_due ON deadlines (due_us) WHERE done = 0;
