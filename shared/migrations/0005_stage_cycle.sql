-- 0005_stage_cycle: verdicts belong to a cycle; the coverage baseline keeps
-- the exact value the gate compared.

-- A verdict counts only in the cycle it was recorded in: a report that
-- arrives after a rollback (the task's cycle moved on) is never read.
ALTER TABLE task_evidence ADD COLUMN cycle integer NOT NULL DEFAULT 0;

-- numeric without a scale: 80.0005 stays 80.0005, so the gate and the
-- stored baseline compare the same number.
ALTER TABLE coverage_baseline ALTER COLUMN pct TYPE numeric;
