-- Anchors are read from the anchor service's records on JetStream (MNEMO-ANCHORS, the
-- mnemo-epochs object store) by the API and the auditor. The PostgreSQL copy was written
-- by the anchor service, read by nothing, and could not be rebuilt from the chains.
DROP TABLE IF EXISTS anchors;
