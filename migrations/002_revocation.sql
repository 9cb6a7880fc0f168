-- The revocation list (Postgres is the truth; Redis fans changes out) and the IETF Token Status Lists.

-- Every security event that instances must apply to their in-memory view, numbered. The counter row
-- is locked by each change until its commit, so versions become visible in order: an instance that
-- has seen version N has seen everything before it.
CREATE TABLE security_event_counter (
  id       int PRIMARY KEY CHECK (id = 1),
  version  bigint NOT NULL
);
INSERT INTO security_event_counter (id, version) VALUES (1, 0);

CREATE TABLE security_events (
  version     bigint PRIMARY KEY,
  kind        text NOT NULL CHECK (kind IN ('client_revoked', 'token_revoked', 'family_revoked', 'client_keys_changed')),
  target      text NOT NULL,             -- client_id, jti or refresh-token family id
  client_id   text,
  expires_at  timestamptz,               -- tokens and families: after this the record is pruned
  actor       text NOT NULL,
  reason      text,
  at          timestamptz NOT NULL DEFAULT now()
);
-- revoking twice is a no-op, not a second event
CREATE UNIQUE INDEX security_events_once ON security_events (kind, target) WHERE kind <> 'client_keys_changed';
CREATE INDEX security_events_expires_at ON security_events (expires_at) WHERE expires_at IS NOT NULL;

-- Status lists, one per expiry window (and shard when a window fills up). Instances reserve blocks
-- of indices by advancing next_idx, so an index is never handed out twice.
CREATE TABLE status_lists (
  id            text PRIMARY KEY,
  window_start  timestamptz NOT NULL,
  window_end    timestamptz NOT NULL,
  capacity      int NOT NULL,
  next_idx      int NOT NULL DEFAULT 0,
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX status_lists_window_end ON status_lists (window_end);

-- the set bits (revoked tokens) of each list
CREATE TABLE status_bits (
  list_id  text NOT NULL REFERENCES status_lists (id) ON DELETE CASCADE,
  idx      int NOT NULL,
  PRIMARY KEY (list_id, idx)
);

ALTER TABLE token_events ADD COLUMN status_list text, ADD COLUMN status_idx int;
