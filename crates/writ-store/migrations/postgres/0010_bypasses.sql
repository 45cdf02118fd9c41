-- Break-glass changes and whether they have been reviewed (a principal with one unreviewed
-- cannot use break-glass again), projected from the ledger and rebuilt by `writ admin rebuild`.
CREATE TABLE bypasses (
    case_id     UUID    PRIMARY KEY,
    by_principal TEXT    NOT NULL,
    reviewed    BOOLEAN NOT NULL,
    updated_seq BIGINT  NOT NULL
);
CREATE INDEX bypasses_by_principal ON bypasses (by_principal, reviewed);
