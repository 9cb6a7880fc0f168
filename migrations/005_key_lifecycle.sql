-- Signing-key lifecycle: a key's state follows from its activation time and its successor's, so every
-- instance derives the same schedule without coordination. Private keys are stored encrypted.
ALTER TABLE signing_keys ADD COLUMN activate_at timestamptz;
UPDATE signing_keys SET activate_at = coalesce(activated_at, created_at);
ALTER TABLE signing_keys ALTER COLUMN activate_at SET NOT NULL;
CREATE INDEX signing_keys_activate_at ON signing_keys (activate_at);
