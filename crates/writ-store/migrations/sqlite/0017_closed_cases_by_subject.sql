-- A closed case is found again by its subject and finding type (a new case names it); an open
-- one is found through `cases_one_open_per_subject`. So the subject index holds closed cases
-- only: opening a case, or changing an open one, no longer writes a page of an index keyed by
-- subject (random keys: each such write is a page of its own in every small commit).
DROP INDEX cases_by_subject;
CREATE INDEX cases_closed_by_subject ON cases (subject, finding_type, updated_seq) WHERE state = 'closed';
