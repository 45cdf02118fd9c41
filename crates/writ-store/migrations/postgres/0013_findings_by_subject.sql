-- Findings about one subject, in ledger order: what a granted access's revocation criteria
-- (`agent_tool_access` `revoke_on`) are checked against, without reading every finding.
CREATE INDEX findings_by_subject ON findings (subject_system, subject_external_id, seq);
