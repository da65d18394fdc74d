-- An erasure takes the memory's metadata with its content: kind, tags, capture time,
-- source, content type, size and storage belong to the record whose key was destroyed.
-- An erased memory keeps only what the chain itself shows (id, seq, the event's time and
-- that it was erased). Rows erased before this migration are scrubbed here.
ALTER TABLE memories
    ALTER COLUMN kind DROP NOT NULL,
    ALTER COLUMN tags DROP NOT NULL,
    ALTER COLUMN content_type DROP NOT NULL,
    ALTER COLUMN size DROP NOT NULL,
    ALTER COLUMN storage DROP NOT NULL;
UPDATE memories
   SET kind = NULL, tags = NULL, captured_at = NULL, source = NULL, content_type = NULL,
       size = NULL, storage = NULL, body = NULL
 WHERE erased_seq IS NOT NULL;

-- A processor's result is marked as such in every view: the chain shows it (the event is
-- memory_derived), so it stays after an erasure too.
ALTER TABLE memories ADD COLUMN derived boolean NOT NULL DEFAULT false;
UPDATE memories m SET derived = true
  FROM events e
 WHERE e.user_id = m.user_id AND e.seq = m.seq AND e.kind = 'memory_derived';
