-- Uploads: files a tenant sent (CSV, NDJSON) for an import job to read. The bytes live in
-- the blob store at `path` (`uploads/{tenant}/{id}`); this row says whose they are, how big
-- and their SHA-256, so a job can name an upload by id and only its owner's jobs can.
-- `etag` is the object's entity tag when it was recorded: imports read the object only if
-- it still has it, so a file written again later (through a direct upload URL that has not
-- expired yet) is refused rather than read half old, half new.
CREATE TABLE offload.uploads (
    id          uuid        PRIMARY KEY,
    tenant_id   text        NOT NULL REFERENCES offload.tenants (id) ON DELETE CASCADE,
    path        text        NOT NULL,
    bytes       bigint      NOT NULL CHECK (bytes >= 0),
    sha256      text        NOT NULL,
    etag        text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX uploads_tenant_created ON offload.uploads (tenant_id, created_at DESC);

-- What each committed import work item did, written in the same transaction as its rows.
-- A redelivered item finds its row here and returns the recorded counts instead of loading
-- again, so the job's inserted/updated counts stay exact whatever the deliveries.
CREATE TABLE offload.import_commits (
    job_id       uuid        NOT NULL REFERENCES offload.jobs (id) ON DELETE CASCADE,
    seq          integer     NOT NULL CHECK (seq >= 0),
    output       jsonb       NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, seq)
);
