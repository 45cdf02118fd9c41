-- A finding's idempotency key is the key of the ledger entry that records it (the store checks
-- this on every commit), so the ledger's unique index already makes it unique. The findings
-- table's own unique index on it only doubled the cost of every insert.
ALTER TABLE findings DROP CONSTRAINT findings_idempotency_key_key;
