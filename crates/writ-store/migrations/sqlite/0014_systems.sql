-- Each target system's inventory sync: when it last ran, when it last succeeded, how it went,
-- the counts of its last success, and whether automation is paused there (and why).
-- Projected from `system_synced`, `automation_paused` and `automation_resumed` events and
-- rebuilt by `writ admin rebuild`.
CREATE TABLE systems (
    system          TEXT    PRIMARY KEY,
    target          TEXT    NOT NULL,
    last_attempt_us INTEGER NOT NULL,
    last_success_us INTEGER,
    scheduled       BOOLEAN NOT NULL,
    outcome         TEXT    NOT NULL,
    identities      INTEGER,
    owned           INTEGER,
    paused_reason   TEXT,
    updated_seq     INTEGER NOT NULL
);
-- Which replica runs a system's scheduled sync in a round (rounds are `sync_every` long): a
-- coordination row like a job lease, not derived from the ledger.
CREATE TABLE sync_claims (
    system TEXT    PRIMARY KEY,
    round  INTEGER NOT NULL,
    holder TEXT    NOT NULL
);
