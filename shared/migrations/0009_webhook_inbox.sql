-- 0009_webhook_inbox: every webhook event stage-service acts on is kept
-- until it has been applied or can no longer apply (docs/architecture/stage.md).
--
-- Neither sender retries an answered delivery: Gitea marks a non-2xx answer
-- failed and leaves redelivery to a person; Plane retries only when no answer
-- came at all. So an event deferred by a held lease is persisted here before
-- the sender is answered, and stage-service's inbox thread applies it once
-- the lease is free. (source, delivery) is the sender's delivery id (the
-- body's SHA-256 when the sender sent none): a resent delivery is found, not
-- applied again. Rows are applied oldest first per work item.
CREATE TABLE webhook_inbox (
    id              bigserial   PRIMARY KEY,
    source          text        NOT NULL CHECK (source IN ('gitea', 'plane')),
    delivery        text        NOT NULL CHECK (length(delivery) BETWEEN 1 AND 200),
    work_item       text        NOT NULL,
    -- what the event asks: cancel (from whatever stage the item is in) or
    -- the review edge review->testing / review->development
    kind            text        NOT NULL CHECK (kind IN ('cancel', 'approve', 'reject')),
    -- the stage and cycle the item was in when the event arrived; a review
    -- event applies only while the item is still there
    seen_stage      text        NOT NULL,
    seen_cycle      integer     NOT NULL,
    -- pending: to apply; applying: claimed by `claimed_by` at `claimed_at`;
    -- done: settled with `outcome` (applied, superseded, gate_failed, rejected)
    state           text        NOT NULL DEFAULT 'pending'
                                CHECK (state IN ('pending', 'applying', 'done')),
    outcome         text        NOT NULL DEFAULT '',
    detail          text        NOT NULL DEFAULT '',
    attempts        integer     NOT NULL DEFAULT 0,
    received_at     timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    claimed_by      text        NOT NULL DEFAULT '',
    claimed_at      timestamptz,
    settled_at      timestamptz,
    UNIQUE (source, delivery)
);
CREATE INDEX webhook_inbox_open_idx ON webhook_inbox (work_item, id) WHERE state <> 'done';
