-- launcher-service: what a job needs to be run again after a restart, how it
-- ended, what the monitor did with it, and the start-up recovery marker that
-- lease-service's recovery waits for (docs/architecture/launcher.md).

ALTER TABLE jobs
    ADD COLUMN stage          text    NOT NULL DEFAULT '',
    ADD COLUMN prompt         text    NOT NULL DEFAULT '',
    ADD COLUMN workdir        text    NOT NULL DEFAULT '',
    ADD COLUMN stdout_path    text    NOT NULL DEFAULT '',
    ADD COLUMN stderr_path    text    NOT NULL DEFAULT '',
    ADD COLUMN attempts       integer NOT NULL DEFAULT 0,
    ADD COLUMN exit_status    integer,
    ADD COLUMN finish_reason  text    NOT NULL DEFAULT '',
    ADD COLUMN requeued_at    timestamptz,
    ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false,
    ADD COLUMN monitor_state  text    NOT NULL DEFAULT 'none',
    ADD COLUMN monitor_detail text    NOT NULL DEFAULT '',
    ADD COLUMN monitor_attempts integer NOT NULL DEFAULT 0;

CREATE INDEX jobs_queued_idx ON jobs (host_id, id) WHERE status = 'queued';
CREATE INDEX jobs_monitor_idx ON jobs (id) WHERE monitor_state IN ('pending', 'deferred', 'error');

-- One row per host: written by launcher-service after its start-up requeue.
-- lease-service's start-up recovery waits (bounded) until the launcher of
-- its host and boot has written it, so that requeue precedes reclaim.
CREATE TABLE launcher_recovery (
    host_id      text        PRIMARY KEY,
    boot_id      text        NOT NULL,
    instance_id  text        NOT NULL,
    pid          integer     NOT NULL,
    start_ticks  bigint      NOT NULL,
    requeued     integer     NOT NULL DEFAULT 0,
    failed       integer     NOT NULL DEFAULT 0,
    done_at      timestamptz NOT NULL DEFAULT now()
);
