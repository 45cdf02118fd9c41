-- Certification campaigns are read from their `campaign_started` entries: a partial index
-- keeps listing them from scanning the ledger, at no cost to other appends.
CREATE INDEX ledger_entries_campaigns ON ledger_entries (seq) WHERE kind = 'campaign_started';
