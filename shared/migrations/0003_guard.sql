-- guard-service: comments posted to the tracker, by the caller's external
-- id, so that a repeated AddComment is not posted twice (even across
-- restarts). 'pending' marks a post in flight; a pending row older than the
-- service's claim window may be claimed again (its poster died or timed out).
CREATE TABLE guard_comments (
    external_id text        PRIMARY KEY,
    project     text        NOT NULL,
    issue       text        NOT NULL,
    state       text        NOT NULL CHECK (state IN ('pending', 'posted')),
    comment_id  text        NOT NULL DEFAULT '',
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    posted_at   timestamptz
);

CREATE INDEX guard_audit_decision_idx ON guard_audit (decision, at);
