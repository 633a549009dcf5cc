-- The notifications service's own view of the world, built from events only.

-- Recipients, from user.registered: the service never calls accounts.
CREATE TABLE recipients (
    user_id       uuid        PRIMARY KEY,
    email         text        NOT NULL,
    name          text        NOT NULL,
    registered_at timestamptz NOT NULL
);

-- One row per event that produced a notification: the primary key is the
-- dedupe table (a redelivered or re-published event finds its row and sends
-- nothing). `sending` is written before the SMTP call, `sent` after it.
CREATE TABLE notifications (
    event_id    uuid        PRIMARY KEY,
    event_type  text        NOT NULL,
    user_id     uuid        NOT NULL,
    order_id    uuid,
    recipient   text        NOT NULL,
    subject     text        NOT NULL,
    status      text        NOT NULL CHECK (status IN ('sending', 'sent')),
    occurred_at timestamptz NOT NULL,  -- the event's: when its change committed
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
CREATE INDEX notifications_user_idx ON notifications (user_id, created_at DESC);
