-- Processing under consent: what core's chain rules remember of processing per chain
-- (processing grants, fetches, derivations and lineage, erasures, models), kept whole so
-- the projector resumes a chain with the same rules the auditor applies from genesis.
CREATE TABLE processing_state (
    user_id     text PRIMARY KEY,
    last_seq    bigint NOT NULL,
    state       jsonb NOT NULL
);
