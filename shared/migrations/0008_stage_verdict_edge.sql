-- 0008_stage_verdict_edge: a verdict belongs to the edge it was reported for.
--
-- A verdict is recorded by an AdvanceStage call along one edge (for example
-- review->testing) and the gates of an edge read only the verdicts recorded
-- for that edge in the task's current cycle, so a `review_verdict` printed by
-- the developer (reported at development->review) never passes the review.
-- The engine's own verdicts (built_image_digest) keep transition '' and count
-- for every later edge of their cycle.
--
-- Rows recorded before this migration get transition '': they are read by no
-- gate (the reporters of an item in flight report again), which errs on the
-- side of not advancing.
ALTER TABLE task_evidence ADD COLUMN transition text NOT NULL DEFAULT '';
ALTER TABLE task_evidence DROP CONSTRAINT task_evidence_pkey;
ALTER TABLE task_evidence ADD PRIMARY KEY (work_item, transition, key);
