-- The access log tells everything that left the ledger: a processor's fetch of memories
-- under a processing grant (`inputs_fetched`) is an entry too, beside the reads of other
-- users (`access_recorded`). `accessor_kind` says which: `user` or `processor` (then
-- `accessor` is the processor's name and `action` is `fetch`). Fetches projected before
-- this migration appear after `mnemo projections rebuild`.
ALTER TABLE access_log ADD COLUMN accessor_kind text NOT NULL DEFAULT 'user';
