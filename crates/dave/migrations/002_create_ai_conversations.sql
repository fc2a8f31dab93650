-- Migration: 002_create_ai_conversations
-- Issue: DESIGN §4 (dave database layout)
-- Date: 2026-11-26
-- Author: dave team
-- Description: Conversations, each owned by one user. Authorization is in the
--              application layer: every statement filters on user_id.
--              Same columns, constraint and index names as the Python reference,
--              so a database it created is adopted without changes.

BEGIN;

CREATE OR REPLACE FUNCTION update_updated_at_column()
RETURNS TRIGGER AS $$
BEGIN
    NEW.updated_at = NOW();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TABLE IF NOT EXISTS ai_conversations (
    id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id     UUID NOT NULL,
    title       VARCHAR(200) NOT NULL DEFAULT 'New Conversation',
    context     JSONB NOT NULL DEFAULT '{}'::jsonb,
    metadata    JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT NOW(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

-- Keyset pagination of one user's conversations, newest updated_at first:
-- WHERE user_id = $1 AND (updated_at, id) < ($2, $3) ORDER BY updated_at DESC, id DESC.
CREATE INDEX IF NOT EXISTS idx_ai_conversations_user_updated
    ON ai_conversations (user_id, updated_at DESC, id DESC);

-- Containment filters on metadata (metadata @> '{"source":"web"}').
CREATE INDEX IF NOT EXISTS idx_ai_conversations_metadata
    ON ai_conversations USING GIN (metadata);

-- Guarded so the file can be re-run (CREATE TRIGGER alone fails the second time).
DROP TRIGGER IF EXISTS update_ai_conversations_updated_at ON ai_conversations;
CREATE TRIGGER update_ai_conversations_updated_at
    BEFORE UPDATE ON ai_conversations
    FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

COMMENT ON TABLE ai_conversations IS 'AI chat conversations; every query filters on user_id';
COMMENT ON COLUMN ai_conversations.user_id IS 'Owner: API key user, JWT sub, or anonymous session user';
COMMENT ON COLUMN ai_conversations.context IS 'Client-supplied conversation context (JSON object, at most 64 KiB)';
COMMENT ON COLUMN ai_conversations.metadata IS 'Free-form JSON object (at most 64 KiB); GIN-indexed for containment';
COMMENT ON COLUMN ai_conversations.updated_at IS 'Set by trigger on UPDATE; posting a message bumps it';

COMMIT;
