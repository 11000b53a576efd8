-- Replaces 20261122000010's check with one that also notes the repeat: an upsert calls it
-- only for rows it would change, and the rows it reports are then rejected by key from
-- the session's `offload_import_repeats` (a temporary table the loading transaction
-- creates), instead of joining every staged row with the target to find them.
DROP FUNCTION offload.written_by_other_import_part(uuid, integer, xid);

-- Whether transaction `writer` is another committed item ($2: this item's seq) of import
-- job $1; if so, the key ($4, as text) is noted in `offload_import_repeats`. PL/pgSQL, so
-- that it is never inlined and its query takes a fresh snapshot each call: an upsert that
-- waited for a concurrent item's row to commit then sees that item's commit, which the
-- upsert statement's own snapshot predates.
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
