-- Data: 001_test_fixtures
-- Issue: DESIGN §4 (dave test data)
-- Date: 2026-11-26
-- Author: dave team
-- Description: Fixed rows for tests and local trials: two users' conversations
--              and messages, knowledge articles, and three API keys.
--
-- Inserts only when the session's app.environment is 'test' (pgkit sets it on
-- every connection from APP_ENVIRONMENT); anywhere else it does nothing. Every
-- row has a fixed id and ON CONFLICT DO NOTHING, so re-running changes nothing.
--
-- The API keys below are public test values, usable only in a test database:
--   dave_test_admin_key_0000000000000000000000    admin, user ...0001, tier enterprise
--   dave_test_user_key_00000000000000000000000    user ...0002, tier free
--   dave_test_revoked_key_000000000000000000000   user ...0002, revoked (answers 401)
-- Only their SHA-256 hex digests are stored, as for real keys.

BEGIN;

DO $$
BEGIN
    IF current_setting('app.environment', true) IS DISTINCT FROM 'test' THEN
        RAISE NOTICE 'test data skipped: app.environment is %, not test',
            coalesce(current_setting('app.environment', true), '(unset)');
        RETURN;
    END IF;

    INSERT INTO api_keys (id, key_hash, user_id, name, is_admin, tier, revoked_at)
    VALUES
        ('00000000-0000-4000-8000-00000000a001',
         encode(sha256(convert_to('dave_test_admin_key_0000000000000000000000', 'UTF8')), 'hex'),
         '00000000-0000-4000-8000-000000000001', 'test admin key', TRUE, 'enterprise', NULL),
        ('00000000-0000-4000-8000-00000000a002',
         encode(sha256(convert_to('dave_test_user_key_00000000000000000000000', 'UTF8')), 'hex'),
         '00000000-0000-4000-8000-000000000002', 'test user key', FALSE, 'free', NULL),
        ('00000000-0000-4000-8000-00000000a003',
         encode(sha256(convert_to('dave_test_revoked_key_000000000000000000000', 'UTF8')), 'hex'),
         '00000000-0000-4000-8000-000000000002', 'test revoked key', FALSE, 'free',
         TIMESTAMPTZ '2026-01-01 00:00:00+00')
    ON CONFLICT DO NOTHING;

    INSERT INTO ai_conversations (id, user_id, title, context, metadata, created_at, updated_at)
    VALUES
        ('00000000-0000-4000-8000-00000000c001', '00000000-0000-4000-8000-000000000001',
         'Sizing the connection pool', '{"topic": "pool"}', '{"source": "fixture"}',
         TIMESTAMPTZ '2026-01-01 10:00:00+00', TIMESTAMPTZ '2026-01-01 10:05:00+00'),
        ('00000000-0000-4000-8000-00000000c002', '00000000-0000-4000-8000-000000000001',
         'Readiness probe answers 503', '{"topic": "health"}', '{"source": "fixture"}',
         TIMESTAMPTZ '2026-01-02 10:00:00+00', TIMESTAMPTZ '2026-01-02 10:05:00+00'),
        ('00000000-0000-4000-8000-00000000c003', '00000000-0000-4000-8000-000000000002',
         'New Conversation', '{}', '{"source": "fixture"}',
         TIMESTAMPTZ '2026-01-03 10:00:00+00', TIMESTAMPTZ '2026-01-03 10:00:00+00')
    ON CONFLICT DO NOTHING;

    INSERT INTO ai_messages (id, conversation_id, role, content, resources,
                             follow_up_suggestions, metadata, created_at)
    VALUES
        ('00000000-0000-4000-8000-0000000d0001', '00000000-0000-4000-8000-00000000c001', 'user',
         'How large should DB_POOL_MAX_SIZE be with 10 Cloud Run instances?',
         '{}', '{}', '{}', TIMESTAMPTZ '2026-01-01 10:01:00+00'),
        ('00000000-0000-4000-8000-0000000d0002', '00000000-0000-4000-8000-00000000c001', 'assistant',
         'Keep pool max size times max instances below the server''s max_connections, '
         'with room for maintenance connections.',
         '{kb:pool-sizing}', '{"What about the proxy?","How do I check max_connections?"}',
         '{"tokens": 31}', TIMESTAMPTZ '2026-01-01 10:02:00+00'),
        ('00000000-0000-4000-8000-0000000d0003', '00000000-0000-4000-8000-00000000c002', 'user',
         'Why does /health/ready answer 503 right after a deploy?',
         '{}', '{}', '{}', TIMESTAMPTZ '2026-01-02 10:01:00+00')
    ON CONFLICT DO NOTHING;

    INSERT INTO knowledge_base (id, title, content, tags, metadata)
    VALUES
        ('00000000-0000-4000-8000-0000000e0001', 'Pool sizing on Cloud Run',
         'Set DB_POOL_MAX_SIZE so that max instances times pool size stays under max_connections.',
         '{pool,cloud-run}', '{"source": "fixture"}'),
        ('00000000-0000-4000-8000-0000000e0002', 'Readiness probes',
         'The readiness probe answers 503 until the database answers SELECT 1 within two seconds.',
         '{health}', '{"source": "fixture"}')
    ON CONFLICT DO NOTHING;
END
$$;

COMMIT;
