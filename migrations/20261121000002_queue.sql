-- The Postgres queue transport: Service Bus semantics on three tables.
--
-- queue_messages is the hot table. A row lives only while its message is
-- active, scheduled or locked; completion deletes it, dead-lettering moves it.
-- `visible_at` is the one clock: the scheduled enqueue time for a new message,
-- the lock expiry for a locked one, now() + delay for an abandoned one. A
-- message is receivable when visible_at <= now(), so an expired lock makes
-- the message visible again with no sweeper.
CREATE TABLE offload.queues (
    -- Hot tables refer to a queue by this small id: integer keys keep their indexes
    -- narrow and cheap to compare.
    id                  integer  GENERATED ALWAYS AS IDENTITY UNIQUE,
    name                text     PRIMARY KEY,
    lock_duration       interval NOT NULL,
    max_delivery_count  integer  NOT NULL CHECK (max_delivery_count > 0),
    -- Zero disables duplicate detection for the queue.
    dedupe_window       interval NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now()
);

-- No primary key, on purpose: every index on this table is written once per message sent,
-- and the send path is the throughput-critical one. `seq` is unique by construction (an
-- identity column; resubmitted dead letters keep the number they were given). Receivers
-- find messages through the receive index; settling finds a locked message through the
-- partial lock index; statements that touch rows they have just locked join on ctid.
CREATE TABLE offload.queue_messages (
    seq             bigint      GENERATED ALWAYS AS IDENTITY,
    queue_id        integer     NOT NULL,
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
    autovacuum_vacuum_cost_delay = 0
);

-- The receive path: oldest visible first within one queue.
CREATE INDEX queue_messages_receive ON offload.queue_messages (queue_id, visible_at, seq);
-- The settle path: complete, abandon, dead-letter and renew present (seq, lock token).
CREATE INDEX queue_messages_lock ON offload.queue_messages (lock_token, seq) WHERE lock_token IS NOT NULL;

-- Duplicate detection history: a message id is remembered for the queue's
-- window whether or not the message has since been completed (as in Service
-- Bus). Expired rows are purged in batches by the transport's maintenance. The key is a
-- 128-bit hash of the message id (computed by the sender): fixed-width keys make this
-- index, written once per message sent, a fraction of the cost of a text key.
CREATE TABLE offload.queue_dedupe (
    queue_id    integer     NOT NULL,
    id_hash     uuid        NOT NULL,
    expires_at  timestamptz NOT NULL,
    PRIMARY KEY (queue_id, id_hash)
) WITH (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_cost_delay = 0
);

CREATE TABLE offload.queue_dead_letters (
    seq                 bigint      PRIMARY KEY,
    queue_id            integer     NOT NULL,
    message_id          text        NOT NULL,
    body                bytea       NOT NULL,
    properties          jsonb,
    enqueued_at         timestamptz NOT NULL,
    delivery_count      integer     NOT NULL,
    reason              text        NOT NULL,
    description         text,
    dead_lettered_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX queue_dead_letters_queue ON offload.queue_dead_letters (queue_id, seq);
