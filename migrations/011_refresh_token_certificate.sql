-- Refresh tokens of clients with token_binding 'mtls' (RFC 8705 §3): bound to the client certificate
-- (its x5t#S256) instead of a DPoP key. Exactly one of the two binds each token.
ALTER TABLE refresh_tokens ALTER COLUMN jkt DROP NOT NULL;
ALTER TABLE refresh_tokens ADD COLUMN x5t_s256 text;
ALTER TABLE refresh_tokens ADD CONSTRAINT refresh_tokens_one_binding CHECK ((jkt IS NULL) <> (x5t_s256 IS NULL));
