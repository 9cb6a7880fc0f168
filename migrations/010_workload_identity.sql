-- Workload identity (issue 13): trust in the credentials platforms already give workloads, instead of
-- a registered key per client. Postgres is the truth; every instance learns of a change from the bus
-- (channel `workload-trust`) within a second and re-reads it.

-- SPIFFE trust domains whose bundle endpoint Sigil polls (draft-ietf-oauth-spiffe-client-auth).
CREATE TABLE trust_domains (
  name             text PRIMARY KEY,            -- "example.org": the host part of spiffe://example.org/...
  bundle_endpoint  text NOT NULL,               -- https URL of the SPIFFE bundle (a JWKS, use jwt-svid / x509-svid)
  created_by       text NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now()
);

-- Trusted external JWT issuers (Kubernetes service accounts, GitHub Actions, GitLab CI, cloud workload identity).
CREATE TABLE federations (
  issuer                text PRIMARY KEY,       -- the `iss` of their JWTs, exactly
  jwks_uri              text,                   -- null: found by OIDC discovery under the issuer
  audience              text,                   -- null: aud must be Sigil's issuer
  max_lifetime_seconds  int NOT NULL,           -- the longest exp - iat (or exp - now) accepted
  created_by            text NOT NULL,
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now()
);

-- How a client authenticates when it has no registered keys (src/workload/types.ts, WorkloadBinding),
-- and what its access tokens are bound to ('dpop', or 'mtls': cnf.x5t#S256).
ALTER TABLE clients ADD COLUMN workload jsonb;
ALTER TABLE clients ADD COLUMN token_binding text NOT NULL DEFAULT 'dpop' CHECK (token_binding IN ('dpop', 'mtls'));
-- the token path finds workload-bound clients by their identity
CREATE INDEX clients_workload ON clients ((workload->>'kind')) WHERE workload IS NOT NULL;
-- exactly one way to authenticate: registered keys (jwks or jwks_uri) or a workload identity
ALTER TABLE clients DROP CONSTRAINT clients_check;
ALTER TABLE clients ADD CONSTRAINT clients_one_credential
  CHECK ((jwks IS NOT NULL)::int + (jwks_uri IS NOT NULL)::int + (workload IS NOT NULL)::int = 1);
