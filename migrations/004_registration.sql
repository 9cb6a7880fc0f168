-- Dynamic client registration (RFC 7591) and its management (RFC 7592).

-- Initial access tokens (`sit_<id>.<secret>`): only an argon2id hash of the 256-bit secret is kept.
-- Each use is one atomic `uses_left = uses_left - 1 ... WHERE uses_left > 0`, so N uses means N
-- across every instance; the client it registers gets its scope and audiences.
CREATE TABLE initial_access_tokens (
  id           text PRIMARY KEY,
  secret_hash  text NOT NULL,
  scope        text NOT NULL DEFAULT '',
  audiences    text[] NOT NULL DEFAULT '{}',
  uses         int NOT NULL CHECK (uses > 0),
  uses_left    int NOT NULL CHECK (uses_left >= 0 AND uses_left <= uses),
  created_by   text NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz NOT NULL,
  revoked_at   timestamptz,
  revoked_by   text
);
CREATE INDEX initial_access_tokens_expires_at ON initial_access_tokens (expires_at);

-- Clients that registered themselves, with the SHA-256 of their registration access token (RFC 7592)
-- and the initial access token that let them in.
CREATE TABLE client_registrations (
  client_id                text PRIMARY KEY REFERENCES clients (client_id) ON DELETE CASCADE,
  access_token_hash        text NOT NULL,
  initial_access_token_id  text NOT NULL REFERENCES initial_access_tokens (id),
  created_at               timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX client_registrations_initial_access_token ON client_registrations (initial_access_token_id);
