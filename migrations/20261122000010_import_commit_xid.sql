-- The transaction of each committed import work item. A row of the target table whose
-- xmin is another item's of the same job was written by that item: a key this item's part
-- of the file repeats, which is rejected instead of overwriting the other part's row.
ALTER TABLE offload.import_commits ADD COLUMN xid xid8;

-- Whether transaction `writer` is another committed item ($2: this item's seq) of import
-- job $1. PL/pgSQL, so that it is never inlined and its query takes a fresh snapshot each
-- call: an upsert that waited for a concurrent item's row to commit then sees that item's
-- commit, which the upsert statement's own snapshot predates.
CREATE FUNCTION offload.written_by_other_import_part(uuid, integer, xid)
RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RETURN EXISTS (
        SELECT 1 FROM offload.import_commits c
        WHERE c.job_id = $1 AND c.seq <> $2 AND c.xid IS NOT NULL AND c.xid::xid = $3);
END
$$;
