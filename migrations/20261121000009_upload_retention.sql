-- Uploads can be deleted: by their tenant (`DELETE /v1/uploads/{id}`) and by the enqueuers'
-- retention sweep (`uploads.retention_hours` after they were recorded). Neither deletes an
-- upload an unfinished import still reads.
--
-- Deleting is three steps: the row is marked (`deleted_at`), then the blob is deleted, then
-- the row. A marked row is invisible to every reader (the API, import validation and
-- planning), so no import can start reading a file whose deletion has begun; a crash after
-- the mark leaves a marked row, which the next sweep finishes (deleting a missing blob is
-- not an error), so no blob is left behind without a row to find it by.
ALTER TABLE offload.uploads ADD COLUMN deleted_at timestamptz;

-- Listing: a tenant's live uploads, newest first, with a (created_at, id) cursor.
DROP INDEX offload.uploads_tenant_created;
CREATE INDEX uploads_tenant_created ON offload.uploads (tenant_id, created_at DESC, id DESC)
    WHERE deleted_at IS NULL;
-- The sweep: live uploads, oldest first; and deletions a crash interrupted.
CREATE INDEX uploads_created ON offload.uploads (created_at) WHERE deleted_at IS NULL;
CREATE INDEX uploads_deleting ON offload.uploads (deleted_at) WHERE deleted_at IS NOT NULL;

-- "Is an unfinished import reading this upload?", asked before every deletion.
CREATE INDEX jobs_unfinished_import_upload ON offload.jobs (((params -> 'import' ->> 'upload_id')))
    WHERE kind = 'import' AND status NOT IN ('succeeded', 'failed', 'cancelled');

-- An import job takes a share lock on its upload's row in the transaction that creates it.
-- A deletion locks the row FOR UPDATE and only then, in a later statement, looks for
-- unfinished imports; so either the job commits first and the deletion sees it (and
-- refuses), or the deletion's mark commits first and the job's planning finds the upload
-- gone (and fails the job before reading a byte). Without the lock a job created between
-- the deletion's look and its mark would be missed by the look and could start reading a
-- file being deleted. A missing row is not an error here: the job fails at planning, with
-- the reason, which is also what a schedule's tick should get.
CREATE FUNCTION offload.lock_import_upload() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    upload text := NEW.params -> 'import' ->> 'upload_id';
BEGIN
    IF upload ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        PERFORM 1 FROM offload.uploads WHERE id = upload::uuid FOR SHARE;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER jobs_lock_import_upload
    BEFORE INSERT ON offload.jobs
    FOR EACH ROW WHEN (NEW.kind = 'import')
    EXECUTE FUNCTION offload.lock_import_upload();
