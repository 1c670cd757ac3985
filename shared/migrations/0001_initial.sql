-- 0001_initial: the tables of every service. Each service owns its tables
-- (see docs/architecture/overview.md); all share this one database.
-- Forward-only: never edit an applied migration, add a new numbered file.

-- stage-service ----------------------------------------------------------
CREATE TABLE tasks (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    work_item   text        NOT NULL UNIQUE CHECK (work_item <> ''),
    repo        text        NOT NULL,
    title       text        NOT NULL DEFAULT '',
    stage       text        NOT NULL DEFAULT 'backlog',
    version     bigint      NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tasks_stage_idx ON tasks (stage);

CREATE TABLE stage_history (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id     bigint      NOT NULL REFERENCES tasks (id),
    from_stage  text        NOT NULL,
    to_stage    text        NOT NULL,
    actor       text        NOT NULL,
    lease_epoch bigint,
    reason      text        NOT NULL DEFAULT '',
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stage_history_task_idx ON stage_history (task_id, id);

CREATE TABLE side_effects (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    work_item   text        NOT NULL,
    transition  text        NOT NULL,
    effect      text        NOT NULL,
    lease_epoch bigint,
    outcome     text        NOT NULL DEFAULT 'pending'
                CHECK (outcome IN ('pending', 'ok', 'failed', 'unknown')),
    detail      text        NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    UNIQUE (work_item, transition, effect)
);

-- lease-service ----------------------------------------------------------
CREATE TABLE hosts (
    host_id     text        PRIMARY KEY,
    boot_id     text        NOT NULL,
    instance_id text        NOT NULL,
    rpc_url     text        NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    seen_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE transition_lease (
    work_item         text        PRIMARY KEY,
    epoch             bigint      NOT NULL CHECK (epoch > 0),
    owner_host        text        NOT NULL,
    owner_boot_id     text        NOT NULL,
    owner_pid         integer     NOT NULL,
    owner_start_ticks bigint      NOT NULL,
    owner_instance    text        NOT NULL,
    actor             text        NOT NULL,
    transition        text        NOT NULL,
    repo              text        NOT NULL,
    acquired_at       timestamptz NOT NULL DEFAULT now(),
    released_at       timestamptz,
    release_reason    text
);
CREATE INDEX transition_lease_held_idx ON transition_lease (acquired_at)
    WHERE released_at IS NULL;

CREATE TABLE lease_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    work_item   text        NOT NULL,
    epoch       bigint,
    kind        text        NOT NULL CHECK (kind IN ('granted', 'released',
                'deferred', 'reclaimed-stale', 'force-released',
                'ceiling-released')),
    actor       text        NOT NULL DEFAULT '',
    detail      text        NOT NULL DEFAULT '',
    at          timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX lease_events_item_idx ON lease_events (work_item, id);

-- launcher-service -------------------------------------------------------
CREATE TABLE jobs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    role         text        NOT NULL,
    work_item    text        NOT NULL,
    status       text        NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'running', 'succeeded', 'failed',
                                   'timed_out', 'cancelled')),
    host_id      text,
    boot_id      text,
    instance_id  text,
    pid          integer,
    start_ticks  bigint,
    timeout_s    integer     NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz
);
CREATE INDEX jobs_running_idx ON jobs (host_id) WHERE status = 'running';

CREATE TABLE agent_runs (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id        bigint      NOT NULL REFERENCES jobs (id),
    role          text        NOT NULL,
    work_item     text        NOT NULL,
    model         text,
    input_tokens  bigint,
    output_tokens bigint,
    cost_usd      numeric(12, 6),
    duration_ms   bigint,
    exit_status   integer,
    verdicts      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX agent_runs_role_idx ON agent_runs (role, at);

-- guard-service ----------------------------------------------------------
CREATE TABLE guard_audit (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    runtime     text        NOT NULL,
    operation   text        NOT NULL,
    project     text        NOT NULL DEFAULT '',
    decision    text        NOT NULL CHECK (decision IN ('allow', 'block')),
    reason      text        NOT NULL,
    caller      text        NOT NULL DEFAULT ''
);
CREATE INDEX guard_audit_at_idx ON guard_audit (at);
