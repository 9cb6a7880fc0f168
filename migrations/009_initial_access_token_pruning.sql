-- Dead initial access tokens (expired or revoked a week ago) are deleted by housekeeping. A client
-- registration names the token it was made with only while that token is kept; audit_log
-- (`client.register`, `registration_token.use`) keeps the link for good.
ALTER TABLE client_registrations ALTER COLUMN initial_access_token_id DROP NOT NULL;
ALTER TABLE client_registrations DROP CONSTRAINT client_registrations_initial_access_token_id_fkey;
ALTER TABLE client_registrations ADD CONSTRAINT client_registrations_initial_access_token_id_fkey
  FOREIGN KEY (initial_access_token_id) REFERENCES initial_access_tokens (id) ON DELETE SET NULL;
CREATE INDEX initial_access_tokens_revoked_at ON initial_access_tokens (revoked_at) WHERE revoked_at IS NOT NULL;
