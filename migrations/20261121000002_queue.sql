-- The Postgres queue transport: Service Bus semantics on three tables.
--
-- queue_messages is the hot table. A row lives only while its message is
-- active, scheduled or locked; completion deletes it, dead-lettering moves it.
-- `visible_at` is the one clock: the scheduled enqueue time for a new message,
-- the lock expiry for a locked one, now() + delay for an abandoned one. A
-- message is receivable when visible_at <= now(), so an expired lock makes
-- the message visible again with no sweeper.
CREATE TABLE offload.queues (
    name                text     PRIMARY KEY,
    lock_duration       interval NOT NULL,
    max_delivery_count  integer  NOT NULL CHECK (max_delivery_count > 0),
    -- Zero disables duplicate detection for the queue.
    dedupe_window       interval NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE offload.queue_messages (
    seq             bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue           text        NOT NULL,
    message_id      text        NOT NULL,
    body            bytea       NOT NULL,
    properties      jsonb,
    enqueued_at     timestamptz NOT NULL DEFAULT now(),
    visible_at      timestamptz NOT NULL,
    lock_token      uuid,
    delivery_count  integer     NOT NULL DEFAULT 0
) WITH (
    -- Every receive is an UPDATE and every completion a DELETE: let
    -- autovacuum visit this table early and without cost-based sleeping so
    -- the table and its indexes stay at the size of the live backlog.
    autovacuum_vacuum_scale_factor = 0.0,
    autovacuum_vacuum_threshold = 10000,
    autovacuum_vacuum_insert_scale_factor = 0.0,
    autovacuum_vacuum_insert_threshold = 50000,
    autovacuum_vacuum_cost_delay = 0,
    fillfactor = 90
);

-- The receive path: oldest visible first within one queue.
CREATE INDEX queue_messages_receive ON offload.queue_messages (queue, visible_at, seq);

-- Duplicate detection history: a message id is remembered for the queue's
-- window whether or not the message has since been completed (as in Service
-- Bus). Expired rows are purged in batches by the transport's maintenance.
CREATE TABLE offload.queue_dedupe (
    queue       text        NOT NULL,
    message_id  text        NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (queue, message_id)
) WITH (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_cost_delay = 0
);

CREATE TABLE offload.queue_dead_letters (
    seq                 bigint      PRIMARY KEY,
    queue               text        NOT NULL,
    message_id          text        NOT NULL,
    body                bytea       NOT NULL,
    properties          jsonb,
    enqueued_at         timestamptz NOT NULL,
    delivery_count      integer     NOT NULL,
    reason              text        NOT NULL,
    description         text,
    dead_lettered_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX queue_dead_letters_queue ON offload.queue_dead_letters (queue, seq);
