-- Migration: 004_create_knowledge_base
-- Issue: DESIGN §4 (dave database layout)
-- Date: 2026-11-26
-- Author: dave team
-- Description: Knowledge base articles with Postgres full-text search.

BEGIN;

CREATE OR REPLACE FUNCTION update_updated_at_column()
RETURNS TRIGGER AS $$
BEGIN
    NEW.updated_at = NOW();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TABLE IF NOT EXISTS knowledge_base (
    id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    title       VARCHAR(500) NOT NULL,
    content     TEXT NOT NULL,
    tags        TEXT[] NOT NULL DEFAULT '{}',
    metadata    JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

-- The search query must use this exact expression for the planner to use the index:
-- to_tsvector('english', title || ' ' || content) @@ plainto_tsquery('english', $1).
CREATE INDEX IF NOT EXISTS idx_knowledge_base_fts
    ON knowledge_base USING GIN (to_tsvector('english', title || ' ' || content));
-- Tag filters (tags @> ARRAY['x']) and metadata containment.
CREATE INDEX IF NOT EXISTS idx_knowledge_base_tags ON knowledge_base USING GIN (tags);
CREATE INDEX IF NOT EXISTS idx_knowledge_base_metadata ON knowledge_base USING GIN (metadata);

DROP TRIGGER IF EXISTS update_knowledge_base_updated_at ON knowledge_base;
CREATE TRIGGER update_knowledge_base_updated_at
    BEFORE UPDATE ON knowledge_base
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

COMMENT ON TABLE knowledge_base IS 'Knowledge base articles, searched with to_tsvector/plainto_tsquery (english)';
COMMENT ON COLUMN knowledge_base.tags IS 'Free tags (text[]); GIN-indexed';
COMMENT ON COLUMN knowledge_base.metadata IS 'Free-form JSON object; GIN-indexed for containment';

COMMIT;
