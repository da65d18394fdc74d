-- Users whose chain had an event the chain rules (mnemo-core's ChainState, the same rules
-- mnemo-audit applies) refused. Their views hold the chain up to the event before `seq`;
-- nothing later is applied, and reads of their data answer 503 (problem type
-- `quarantined`). Built by the projector like every view, so a rebuild rebuilds it.
CREATE TABLE quarantine (
    user_id         text PRIMARY KEY,
    seq             bigint NOT NULL,
    check_code      text NOT NULL,
    reason          text NOT NULL,
    quarantined_at  timestamptz NOT NULL
);
