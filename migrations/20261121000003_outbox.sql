-- Messages that must leave with a database transaction, for transports outside Postgres.
--
-- With the Postgres transport a job's first message is written in the same transaction as
-- the job row. With a broker (Service Bus) that cannot join the transaction, the message is
-- written here instead, in that transaction, and relayed to the broker afterwards; a broker
-- outage delays the message but cannot lose it. A row is deleted only after the broker took
-- the message; a relay that dies between the two sends it again, and the broker's duplicate
-- detection (the message id is deterministic) drops the repeat.
CREATE TABLE offload.outbox (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue       text        NOT NULL,
    message_id  text        NOT NULL,
    body        bytea       NOT NULL,
    properties  jsonb       NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Messages taken out of circulation on a transport that cannot dead-letter explicitly
-- (Service Bus's REST API): the message as received, the reason, and when. Nothing is lost
-- and nothing loops; an operator reads them here.
CREATE TABLE offload.parked_messages (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue           text        NOT NULL,
    message_id      text        NOT NULL,
    body            bytea       NOT NULL,
    properties      jsonb       NOT NULL DEFAULT '{}',
    delivery_count  integer     NOT NULL,
    reason          text        NOT NULL,
    description     text        NOT NULL,
    parked_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX parked_messages_queue ON offload.parked_messages (queue, id);
