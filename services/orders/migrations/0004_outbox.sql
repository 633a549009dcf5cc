-- The transactional outbox (services/events/outbox.py): order.confirmed and
-- order.cancelled are written here in the transaction that finishes the saga,
-- and published to NATS JetStream by the relay, which marks them sent.
CREATE TABLE outbox (
    id            uuid        PRIMARY KEY,  -- the event id, and its Nats-Msg-Id
    seq           bigint      GENERATED ALWAYS AS IDENTITY,
    subject       text        NOT NULL,
    payload       jsonb       NOT NULL,     -- services/events/events.schema.json
    trace_context jsonb       NOT NULL DEFAULT '{}',  -- W3C traceparent of the change
    created_at    timestamptz NOT NULL DEFAULT now(),
    sent_at       timestamptz
);
CREATE INDEX outbox_unsent_idx ON outbox (seq) WHERE sent_at IS NULL;
