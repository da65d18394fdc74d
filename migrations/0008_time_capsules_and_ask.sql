-- Grants gain the ask capability (bit 2) and an opening time (kind tag 0x23, a time
-- capsule: nothing is served under it before `not_before`). Grants projected before this
-- migration were all created with neither (tag 0x20, bits 0 and 1), so the defaults are
-- what their events say.
ALTER TABLE grants ADD COLUMN can_ask boolean NOT NULL DEFAULT false;
ALTER TABLE grants ADD COLUMN not_before timestamptz;

-- A question asked under a grant (`question_asked`) is an access log entry too: action
-- `ask`, its citations as `memories`, and the question's id (its text is in the chain,
-- sealed; the API opens it for the owner).
ALTER TABLE access_log ADD COLUMN question bytea;
