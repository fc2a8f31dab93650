-- Migration: 005_create_admin_prompts
-- Issue: DESIGN §4 (dave database layout)
-- Date: 2026-11-26
-- Author: dave team
-- Description: Versioned prompts: one row per prompt, one per version (immutable);
--              current_version names the version in use. New versions take
--              max + 1 under the prompt row's lock; the unique constraint is the
--              backstop that makes a duplicate number impossible.

BEGIN;

CREATE OR REPLACE FUNCTION update_updated_at_column()
RETURNS TRIGGER AS $$
BEGIN
    NEW.updated_at = NOW();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TABLE IF NOT EXISTS admin_prompts (
    id               UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    category         VARCHAR(100) NOT NULL,
    name             VARCHAR(200) NOT NULL,
    description      TEXT,
    current_version  INTEGER,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    CONSTRAINT uq_admin_prompts_category_name UNIQUE (category, name)
);

CREATE TABLE IF NOT EXISTS admin_prompt_versions (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    prompt_id       UUID NOT NULL REFERENCES admin_prompts(id) ON DELETE CASCADE,
    version_number  INTEGER NOT NULL CHECK (version_number > 0),
    content         TEXT NOT NULL,
    commit_message  TEXT NOT NULL DEFAULT '',
    created_by      UUID,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    -- Its index (prompt_id leading) also serves the foreign key and max(version_number).
    CONSTRAINT uq_admin_prompt_versions_number UNIQUE (prompt_id, version_number)
);

DROP TRIGGER IF EXISTS update_admin_prompts_updated_at ON admin_prompts;
CREATE TRIGGER update_admin_prompts_updated_at
    BEFORE UPDATE ON admin_prompts
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

COMMENT ON TABLE admin_prompts IS 'Prompts managed by admins, unique by (category, name)';
COMMENT ON COLUMN admin_prompts.current_version IS 'version_number of the version in use (NULL before the first one)';
COMMENT ON TABLE admin_prompt_versions IS 'Immutable prompt versions, numbered 1, 2, ... per prompt (no updated_at)';
COMMENT ON COLUMN admin_prompt_versions.created_by IS 'User id of the admin who posted it (NULL for seeds)';

COMMIT;
