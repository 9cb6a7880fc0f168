-- Core tables: clients, signing keys, server secrets, oidc-provider models, replay records,
-- the token issuance/refusal log, and the admin audit log.

CREATE TABLE clients (
  client_id       text PRIMARY KEY,
  name            text NOT NULL,
  status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'revoked')),
  scope           text NOT NULL DEFAULT '',
  audiences       text[] NOT NULL DEFAULT '{}',
  serves          text[] NOT NULL DEFAULT '{}',
  grant_types     text[] NOT NULL,
  dpop_required   boolean NOT NULL DEFAULT true,
  can_introspect  boolean NOT NULL DEFAULT false,
  is_admin        boolean NOT NULL DEFAULT false,
  jwks            jsonb,
  jwks_uri        text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  revoked_at      timestamptz,
  revoked_by      text,
  revoked_reason  text,
  CHECK ((jwks IS NULL) <> (jwks_uri IS NULL))
);
-- at most one admin client: `sigil init` relies on it to be idempotent across instances
CREATE UNIQUE INDEX clients_single_admin ON clients (is_admin) WHERE is_admin;

CREATE TABLE signing_keys (
  kid          text PRIMARY KEY,
  alg          text NOT NULL,
  state        text NOT NULL CHECK (state IN ('next', 'active', 'retiring', 'retired')),
  private_jwk  jsonb NOT NULL,
  public_jwk   jsonb NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  activated_at timestamptz,
  retired_at   timestamptz
);

-- secrets shared by every instance (e.g. the DPoP nonce secret)
CREATE TABLE server_secrets (
  name        text PRIMARY KEY,
  value       bytea NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now()
);

-- oidc-provider's stored models (grants, refresh tokens, registration tokens...)
CREATE TABLE oidc_models (
  model        text NOT NULL,
  id           text NOT NULL,
  payload      jsonb NOT NULL,
  grant_id     text,
  uid          text,
  user_code    text,
  consumed_at  timestamptz,
  expires_at   timestamptz,
  PRIMARY KEY (model, id)
);
CREATE INDEX oidc_models_grant_id ON oidc_models (grant_id) WHERE grant_id IS NOT NULL;
CREATE INDEX oidc_models_expires_at ON oidc_models (expires_at) WHERE expires_at IS NOT NULL;

-- replay records when no Redis is configured: INSERT ... ON CONFLICT DO NOTHING is the atomic claim
CREATE TABLE replay_records (
  id          text PRIMARY KEY,
  expires_at  timestamptz NOT NULL
);
CREATE INDEX replay_records_expires_at ON replay_records (expires_at);

-- every token issued and every refusal at the token endpoint, written in batches off the response path
CREATE TABLE token_events (
  id          bigserial PRIMARY KEY,
  at          timestamptz NOT NULL,
  outcome     text NOT NULL CHECK (outcome IN ('issued', 'refused')),
  grant_type  text,
  client_id   text,
  jti         text,
  expires_at  timestamptz,
  error       text,
  reason      text,
  request_id  text
);
-- "every live token of this client" (client revocation) and "this jti" (token revocation)
CREATE INDEX token_events_client_live ON token_events (client_id, expires_at) WHERE outcome = 'issued';
CREATE INDEX token_events_jti ON token_events (jti) WHERE jti IS NOT NULL;

-- every admin action: who did what to which target, when and why
CREATE TABLE audit_log (
  id       bigserial PRIMARY KEY,
  at       timestamptz NOT NULL DEFAULT now(),
  actor    text NOT NULL,
  action   text NOT NULL,
  target   text,
  reason   text,
  details  jsonb
);
CREATE INDEX audit_log_target ON audit_log (target, at);
