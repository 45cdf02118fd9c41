-- At most one open case per subject and finding type, so that concurrent findings (or several
-- replicas) can never open duplicate cases: the second insert conflicts and joins the first.
DROP INDEX cases_open_by_subject;
CREATE UNIQUE INDEX cases_one_open_per_subject ON cases (subject, finding_type) WHERE state <> 'closed';
