-- Queues list the cases in a state, most recently changed first (the console's, and
-- `GET /v1/cases?state=`): without this index each page sorts every case in the state.
CREATE INDEX cases_by_state ON cases (state, updated_seq);
