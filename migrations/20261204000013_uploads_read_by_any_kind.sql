-- Which jobs read an upload is no longer a question about imports only: a job or schedule
-- of ANY kind whose stored parameters name `upload_id` under the kind's own key
-- (`params -> kind ->> 'upload_id'`) reads that upload. The rule is the SDK's
-- (`jobs_sdk::JobType`): a kind that reads uploads says so this way, and the upload is then
-- kept while such a job is unfinished or such a schedule exists, and its row is share-locked
-- when such a job is created (the ordering against a deletion that migration 9 explains).
-- For imports, the only kind that reads uploads so far, nothing changes.

DROP TRIGGER jobs_lock_import_upload ON offload.jobs;
DROP FUNCTION offload.lock_import_upload();
DROP INDEX offload.jobs_unfinished_import_upload;

-- "Is an unfinished job reading this upload?", asked before every deletion.
CREATE INDEX jobs_unfinished_upload ON offload.jobs (((params -> kind ->> 'upload_id')))
    WHERE params -> kind ? 'upload_id' AND status NOT IN ('succeeded', 'failed', 'cancelled');

CREATE FUNCTION offload.lock_job_upload() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    upload text := NEW.params -> NEW.kind ->> 'upload_id';
BEGIN
    IF upload ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' THEN
        PERFORM 1 FROM offload.uploads WHERE id = upload::uuid FOR SHARE;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER jobs_lock_upload
    BEFORE INSERT ON offload.jobs
    FOR EACH ROW WHEN (NEW.params -> NEW.kind ? 'upload_id')
    EXECUTE FUNCTION offload.lock_job_upload();
