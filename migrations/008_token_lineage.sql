-- The delegation lineage of derived tokens (token exchange, refresh): who holds each one, whose it is
-- (sub), every actor of its `act` chain, and the token it was derived from, so a revocation can follow
-- the whole chain. Written in the issuing transaction, before the token leaves.
CREATE TABLE token_lineage (
  jti          text PRIMARY KEY,
  client_id    text NOT NULL,              -- the holder
  subject      text NOT NULL,              -- sub
  actors       text[] NOT NULL,            -- act.sub, act.act.sub, ... (outermost first)
  parent_jti   text,                       -- the subject token of the exchange (also of the family, for refreshes)
  family_id    text,                       -- the refresh-token family it came with or from
  expires_at   timestamptz NOT NULL,
  status_list  text,
  status_idx   int,
  created_at   timestamptz NOT NULL DEFAULT now()
);
-- "what was derived from these tokens" (revoking a jti walks down the tree)
CREATE INDEX token_lineage_parent ON token_lineage (parent_jti) WHERE parent_jti IS NOT NULL;
CREATE INDEX token_lineage_family ON token_lineage (family_id) WHERE family_id IS NOT NULL;
-- "every live token naming this client as holder, subject or actor" (client revocation)
CREATE INDEX token_lineage_client ON token_lineage (client_id, expires_at);
CREATE INDEX token_lineage_subject ON token_lineage (subject, expires_at);
CREATE INDEX token_lineage_actors ON token_lineage USING gin (actors);
CREATE INDEX token_lineage_expires_at ON token_lineage (expires_at);

-- the token a refresh family was exchanged from: the family dies with it and never outlives it
ALTER TABLE refresh_tokens ADD COLUMN subject_jti text;
-- families born before this: bounded by the longest their subject token can have lived (ACCESS_TOKEN_TTL <= 3600 s)
UPDATE refresh_tokens r SET family_expires_at = least(r.family_expires_at, f.born + interval '3600 seconds')
FROM (SELECT family_id, min(created_at) AS born FROM refresh_tokens GROUP BY family_id) f
WHERE r.family_id = f.family_id;
