-- Schedules: jobs created on a cron expression read in a time zone ("export approved
-- expenses at 06:00 Paris time on the 1st and 15th").
--
-- Any enqueuer may fire a schedule. An enqueuer claims a due schedule with
-- `FOR UPDATE SKIP LOCKED` and, in one transaction, records the tick in schedule_runs,
-- creates the job and its first message, and moves next_run_at past now. The row lock makes
-- each tick fire once; the (schedule_id, tick_at) key and the job's idempotency key
-- (`schedule:{id}:{tick}`) would refuse a second job for the same tick even without it.
CREATE TABLE offload.schedules (
    id              uuid        PRIMARY KEY,
    tenant_id       text        NOT NULL REFERENCES offload.tenants (id) ON DELETE CASCADE,
    name            text        NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    cron            text        NOT NULL,
    timezone        text        NOT NULL,
    -- The job each tick creates, validated and normalized at creation exactly as
    -- POST /v1/jobs stores a job: its kind and `{"<kind>": {…}, "notify"?: {…}}`.
    kind            text        NOT NULL,
    params          jsonb       NOT NULL,
    enabled         boolean     NOT NULL DEFAULT true,
    -- The next tick to fire. NULL while paused, or when the expression never matches again.
    next_run_at     timestamptz,
    -- The tick fired last, and the job it made.
    last_run_at     timestamptz,
    last_job_id     uuid,
    -- Due ticks not fired because a later one was due too (after downtime, only the most
    -- recent missed tick fires). A running total.
    skipped_ticks   bigint      NOT NULL DEFAULT 0 CHECK (skipped_ticks >= 0),
    -- Why the last tick made no job, if it did not.
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- The enqueuers' probe: due schedules, earliest first. Paused ones are not in it.
CREATE INDEX schedules_due ON offload.schedules (next_run_at)
    WHERE enabled AND next_run_at IS NOT NULL;
-- Listing: a tenant's schedules, newest first, with a (created_at, id) cursor.
CREATE INDEX schedules_tenant_created ON offload.schedules (tenant_id, created_at DESC, id DESC);

-- Fired ticks: at most one per (schedule, tick), and so at most one job. The most recent
-- runs of each schedule are kept (older ones are pruned as new ones are recorded).
CREATE TABLE offload.schedule_runs (
    schedule_id uuid        NOT NULL REFERENCES offload.schedules (id) ON DELETE CASCADE,
    tick_at     timestamptz NOT NULL,
    job_id      uuid        REFERENCES offload.jobs (id) ON DELETE SET NULL,
    -- Older due ticks skipped when this one fired.
    skipped     bigint      NOT NULL DEFAULT 0 CHECK (skipped >= 0),
    fired_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule_id, tick_at)
);
