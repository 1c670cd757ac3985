-- 0002_stage: what the stage engine needs beyond 0001 (docs/adr/0003).

-- The pull request merged at review->testing, and the cycle: how many times
-- the item was rolled back. A side effect's intent is keyed by the cycle as
-- well, so that a new pull request after a rollback can be merged while a
-- re-entered transition within one cycle never runs an effect twice.
ALTER TABLE tasks ADD COLUMN pr_number bigint NOT NULL DEFAULT 0 CHECK (pr_number >= 0);
ALTER TABLE tasks ADD COLUMN cycle integer NOT NULL DEFAULT 0 CHECK (cycle >= 0);
ALTER TABLE tasks ADD CONSTRAINT tasks_stage_known CHECK (stage IN ('backlog', 'analysis',
    'architecture', 'development', 'review', 'testing', 'staging', 'deploy', 'done',
    'cancelled'));
CREATE INDEX tasks_repo_pr_idx ON tasks (repo, pr_number) WHERE pr_number > 0;

ALTER TABLE side_effects ADD COLUMN cycle integer NOT NULL DEFAULT 0;
ALTER TABLE side_effects DROP CONSTRAINT side_effects_work_item_transition_effect_key;
ALTER TABLE side_effects ADD CONSTRAINT side_effects_intent_key
    UNIQUE (work_item, transition, effect, cycle);

-- The machine verdicts recorded for an item, latest value per key. A
-- rollback clears them: the verdicts of an undone cycle do not count again.
CREATE TABLE task_evidence (
    work_item   text        NOT NULL,
    key         text        NOT NULL CHECK (key ~ '^[a-z][a-z0-9_]{0,63}$'),
    value       text        NOT NULL,
    actor       text        NOT NULL DEFAULT '',
    at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (work_item, key)
);

-- The coverage baseline of each repo: raised by the coverage ratchet with a
-- conditional UPDATE, never lowered.
CREATE TABLE coverage_baseline (
    repo        text        PRIMARY KEY,
    pct         numeric(6, 3) NOT NULL CHECK (pct >= 0 AND pct <= 100),
    work_item   text        NOT NULL DEFAULT '',
    updated_at  timestamptz NOT NULL DEFAULT now()
);
