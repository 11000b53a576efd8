-- The transaction of each committed import work item. A row of the target table whose
-- xmin is another item's of the same job was written by that item: a key this item's part
-- of the file repeats, which is rejected instead of overwriting the other part's row.
ALTER TABLE offload.import_commits ADD COLUMN xid xid8;

-- Whether transaction `writer` ($3) is another committed item ($2: this item's seq) of
-- import job $1; if so, the key ($4, as text) is noted in `offload_import_repeats`, a
-- temporary table the loading transaction creates, so that only those keys are rejected
-- afterwards. An upsert calls it only for rows it would change. PL/pgSQL, so that it is
-- never inlined and its query takes a fresh snapshot each call: an upsert that waited for
-- a concurrent item's row to commit then sees that item's commit, which the upsert
-- statement's own snapshot predates.
CREATE FUNCTION offload.import_part_repeat(uuid, integer, xid, text)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    IF EXISTS (
        SELECT 1 FROM offload.import_commits c
        WHERE c.job_id = $1 AND c.seq <> $2 AND c.xid IS NOT NULL AND c.xid::xid = $3)
    THEN
        INSERT INTO offload_import_repeats (k) VALUES ($4);
        RETURN true;
    END IF;
    RETURN false;
END
$$;
