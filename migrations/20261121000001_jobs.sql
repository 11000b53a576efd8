-- The job-status store: one row per job, one row per planned work item.
-- Everything Offload owns lives in the `offload` schema so it sits beside the
-- application's own tables (which exports read) without clashing.
CREATE SCHEMA IF NOT EXISTS offload;

CREATE TABLE offload.jobs (
    id              uuid        PRIMARY KEY,
    tenant_id       text        NOT NULL,
    kind            text        NOT NULL,
    status          text        NOT NULL DEFAULT 'queued' CHECK (status IN (
                        'queued', 'planning', 'running', 'finalizing',
                        'succeeded', 'failed', 'cancelling', 'cancelled')),
    params          jsonb       NOT NULL,
    -- Idempotency: the same key with the same request hash returns the same job.
    idempotency_key text,
    request_hash    bytea,
    -- Counters. `total` is NULL until planning has recorded every work item.
    total           integer     CHECK (total >= 0),
    done            integer     NOT NULL DEFAULT 0 CHECK (done >= 0),
    failed          integer     NOT NULL DEFAULT 0 CHECK (failed >= 0),
    -- Items not processed because the job was cancelled.
    skipped         integer     NOT NULL DEFAULT 0 CHECK (skipped >= 0),
    result          jsonb,
    error           text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE UNIQUE INDEX jobs_idempotency_key
    ON offload.jobs (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- Listing: a tenant's jobs, newest first, with a (created_at, id) cursor.
CREATE INDEX jobs_tenant_created ON offload.jobs (tenant_id, created_at DESC, id DESC);

CREATE TABLE offload.work_items (
    job_id      uuid        NOT NULL REFERENCES offload.jobs (id) ON DELETE CASCADE,
    seq         integer     NOT NULL CHECK (seq >= 0),
    kind        text        NOT NULL,
    -- The planned unit of work (a key range, a byte range): recorded once, so a
    -- redelivered plan request re-sends exactly the same items.
    payload     jsonb       NOT NULL DEFAULT '{}',
    status      text        NOT NULL DEFAULT 'pending' CHECK (status IN (
                    'pending', 'done', 'failed', 'skipped')),
    -- What processing produced (rows, bytes of a part), read by finalization.
    output      jsonb,
    attempts    integer     NOT NULL DEFAULT 0,
    last_error  text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    PRIMARY KEY (job_id, seq)
);

-- Tenants and their API keys. Keys are stored as SHA-256 hashes; the plaintext is shown
-- once, when the key is made. The webhook secret signs the tenant's notifications.
CREATE TABLE offload.tenants (
    id              text        PRIMARY KEY,
    webhook_secret  text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE offload.api_keys (
    key_hash    bytea       PRIMARY KEY,
    tenant_id   text        NOT NULL REFERENCES offload.tenants (id) ON DELETE CASCADE,
    -- The first characters of the key, to recognise it in listings.
    prefix      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- Every webhook delivery attempt, for support and for the job document.
CREATE TABLE offload.webhook_attempts (
    job_id       uuid        NOT NULL REFERENCES offload.jobs (id) ON DELETE CASCADE,
    attempt      integer     NOT NULL,
    url          text        NOT NULL,
    status_code  integer,
    error        text,
    duration_ms  integer     NOT NULL,
    attempted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, attempt)
);
