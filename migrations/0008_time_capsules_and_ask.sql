-- Grants gain the ask capability (bit 2) and an opening time (kind tag 0x23, a time
-- capsule: nothing is served under it before `not_before`). Grants projected before this
-- migration were all created with neither (tag 0x20, bits 0 and 1), so the defaults are
-- what their events say.
ALTER TABLE grants ADD COLUMN can_ask boolean NOT NULL DEFAULT false;
ALTER TABLE grants ADD COLUMN not_before timestamptz;
