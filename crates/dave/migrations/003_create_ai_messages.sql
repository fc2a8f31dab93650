-- Migration: 003_create_ai_messages
-- Issue: DESIGN §4 (dave database layout)
-- Date: 2026-11-26
-- Author: dave team
-- Description: Messages of a conversation, append-only (no updated_at, so no
--              trigger); deleted with their conversation.

BEGIN;

CREATE TABLE IF NOT EXISTS ai_messages (
    id                    UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    conversation_id       UUID NOT NULL REFERENCES ai_conversations(id) ON DELETE CASCADE,
    role                  VARCHAR(20) NOT NULL CHECK (role IN ('user', 'assistant', 'system')),
    content               TEXT NOT NULL,
    resources             TEXT[] NOT NULL DEFAULT '{}',
    follow_up_suggestions TEXT[] NOT NULL DEFAULT '{}',
    metadata              JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT NOW()
);

-- Keyset pagination, oldest first: WHERE conversation_id = $1 AND (created_at, id) > ($2, $3)
-- ORDER BY created_at, id. conversation_id leads, so it also serves the foreign key
-- (the cascade on DELETE of a conversation).
CREATE INDEX IF NOT EXISTS idx_ai_messages_conversation_created
    ON ai_messages (conversation_id, created_at, id);

-- No GIN index on metadata here: no query filters messages by metadata, and this
-- is the most written table (a GIN index would tax every insert for nothing).

COMMENT ON TABLE ai_messages IS 'Messages of ai_conversations, oldest first; append-only (no updated_at)';
COMMENT ON COLUMN ai_messages.role IS 'user, assistant or system';
COMMENT ON COLUMN ai_messages.resources IS 'Resource references (text[])';
COMMENT ON COLUMN ai_messages.follow_up_suggestions IS 'Suggested follow-up prompts (text[])';
COMMENT ON COLUMN ai_messages.metadata IS 'Free-form JSON object (at most 64 KiB), e.g. token counts; not indexed';

COMMIT;
