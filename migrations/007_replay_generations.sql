-- Replay claims (assertion and proof jtis) live in Redis, shard by shard, each shard vouched for by
-- a generation marker there. This row records that generations exist: a Redis found without its
-- markers at start has lost them (while every instance was down), it is not a first start.
CREATE TABLE replay_generations (
  id                   int PRIMARY KEY CHECK (id = 1),
  first_at             timestamptz NOT NULL DEFAULT now(),
  -- the latest loss an instance noticed (for operators; the cut-off itself travels in the markers)
  last_loss_at         timestamptz,
  last_loss_cutoff_ms  bigint
);
-- A deployment that served clients before this version kept its claims elsewhere (other Redis keys,
-- or Postgres without Redis): its first start with generations is a loss, not a first start.
INSERT INTO replay_generations (id) SELECT 1 WHERE EXISTS (SELECT 1 FROM clients);
