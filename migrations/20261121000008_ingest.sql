-- Ingest jobs: re-sending a finished job's failed items, and one adaptive concurrency limit
-- per source API shared by every worker.

-- Each retry of a job's failed items is a new round. The round is part of the retried
-- items' message ids (`{job}:{seq}:retry-{n}`), so duplicate detection does not drop them,
-- and a dead letter of an earlier round can no longer fail an item of a later one.
ALTER TABLE offload.work_items ADD COLUMN round integer NOT NULL DEFAULT 0 CHECK (round >= 0);
ALTER TABLE offload.jobs ADD COLUMN retries integer NOT NULL DEFAULT 0 CHECK (retries >= 0);

-- The concurrency limit of each source: `permits` page requests may be in flight at once,
-- `in_use` are. `state` is the AIMD controller behind `permits` (jobs_core::ingest::aimd),
-- changed by compare-and-set on `version` (so no lock is held while a worker computes the
-- new state). Updated on every permit taken or given back: HOT updates on a small row,
-- hence the fill factor.
CREATE TABLE offload.source_limits (
    source      text        PRIMARY KEY,
    permits     integer     NOT NULL CHECK (permits >= 1),
    in_use      integer     NOT NULL DEFAULT 0 CHECK (in_use >= 0),
    state       jsonb       NOT NULL,
    version     bigint      NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
) WITH (fillfactor = 50);

-- Permits held, as leases: a permit whose holder died comes back when its lease expires
-- (whoever waits for a permit reclaims expired ones).
CREATE TABLE offload.source_permits (
    id          uuid        PRIMARY KEY,
    source      text        NOT NULL REFERENCES offload.source_limits (source) ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX source_permits_expiry ON offload.source_permits (source, expires_at);
