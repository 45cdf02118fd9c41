-- The case lifecycle: a closed case is found again by its subject and finding type (a new case
-- names it), and a freeze finds every open case of one identity.
CREATE INDEX cases_by_subject ON cases (subject, finding_type, updated_seq);
CREATE INDEX cases_by_identity ON cases (identity_id) WHERE identity_id IS NOT NULL;
