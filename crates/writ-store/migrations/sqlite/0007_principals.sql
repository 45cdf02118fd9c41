-- Principals and their API tokens, projected from the ledger (principal_created/_changed/
-- _disabled, token_issued/_revoked) in the same transaction as their events, and rebuilt by
-- `writ admin rebuild`. A token is kept only as the SHA-256 of its secret.
CREATE TABLE principals (
    name        TEXT    PRIMARY KEY,
    id          BLOB    NOT NULL UNIQUE,
    snapshot    TEXT    NOT NULL,
    disabled    INTEGER NOT NULL,
    updated_seq INTEGER NOT NULL
);

CREATE TABLE principal_tokens (
    id          BLOB    PRIMARY KEY,
    principal   TEXT    NOT NULL,
    sha256      TEXT    NOT NULL UNIQUE,
    expires_us  INTEGER,
    revoked     INTEGER NOT NULL,
    issued_seq  INTEGER NOT NULL,
    updated_seq INTEGER NOT NULL
);
CREATE INDEX principal_tokens_by_principal ON principal_tokens (principal);
