-- The newest co-signature each witness returned (C2SP tlog-cosignature, cosignature/v1): its
-- signature line over the checkpoint of `size`. Not a projection: it comes from outside the
-- ledger, and `writ audit verify --witness-key` checks it against the checkpoint it names.
CREATE TABLE witness_cosignatures (
    witness     TEXT    PRIMARY KEY,
    size        BIGINT NOT NULL,
    cosignature TEXT    NOT NULL,
    time_us     BIGINT NOT NULL
);
