-- Refresh tokens issued with token exchange. Only a SHA-256 of each token is stored: the tokens are
-- 256-bit random values, so a database dump yields nothing usable. A family is the chain of
-- rotations that started with one exchange; reuse of a consumed token kills the whole family.
CREATE TABLE refresh_tokens (
  token_hash         text PRIMARY KEY,
  family_id          text NOT NULL,
  client_id          text NOT NULL,           -- the holder (the client that exchanged)
  subject            text NOT NULL,           -- sub of the tokens it yields
  subject_client_id  text NOT NULL,           -- client of the original subject token
  act                jsonb,
  scope              text NOT NULL DEFAULT '',
  audience           text NOT NULL,
  jkt                text NOT NULL,           -- the DPoP key thumbprint it is bound to
  family_expires_at  timestamptz NOT NULL,
  access_jti         text,                    -- the access token issued alongside it
  access_expires_at  timestamptz,
  access_status_list text,
  access_status_idx  int,
  created_at         timestamptz NOT NULL DEFAULT now(),
  consumed_at        timestamptz
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_family_expiry ON refresh_tokens (family_expires_at);
