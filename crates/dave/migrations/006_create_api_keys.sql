-- Migration: 006_create_api_keys
-- Issue: DESIGN §4 (dave database layout)
-- Date: 2026-11-26
-- Author: dave team
-- Description: API keys. Only the SHA-256 hex digest of a key is stored (the key
--              itself is shown once, at creation); the same hashing as the
--              Python reference, so keys made by either service work in both.

BEGIN;

CREATE OR REPLACE FUNCTION update_updated_at_column()
RETURNS TRIGGER AS $$
BEGIN
    NEW.updated_at = NOW();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TABLE IF NOT EXISTS api_keys (
    id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    key_hash    CHAR(64) NOT NULL,
    user_id     UUID NOT NULL,
    name        VARCHAR(200),
    is_admin    BOOLEAN NOT NULL DEFAULT FALSE,
    tier        VARCHAR(50) NOT NULL DEFAULT 'free',
    revoked_at  TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    -- Its index is the lookup on every X-API-Key request.
    CONSTRAINT uq_api_keys_key_hash UNIQUE (key_hash)
);

CREATE INDEX IF NOT EXISTS idx_api_keys_user_id ON api_keys (user_id);

DROP TRIGGER IF EXISTS update_api_keys_updated_at ON api_keys;
CREATE TRIGGER update_api_keys_updated_at
    BEFORE UPDATE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

COMMENT ON TABLE api_keys IS 'API keys by SHA-256 hex hash; revoked when revoked_at is set';
COMMENT ON COLUMN api_keys.key_hash IS 'Lowercase hex SHA-256 of the key as sent in X-API-Key';
COMMENT ON COLUMN api_keys.tier IS 'Rate/feature tier handed to the caller (free, pro, enterprise, ...)';
COMMENT ON COLUMN api_keys.revoked_at IS 'Set by dave apikey revoke; a revoked key answers 401';

COMMIT;
