-- Data for the growth benchmarks and the plan tests' sizes (issue 13), generate_series only.
-- psql -v msgs=N -v heavy_convs=N -v deep_msgs=N -v knowledge=N -f scripts/bench-data.sql
--   user 1 (md5('user-1')) owns :heavy_convs conversations, md5('conv-1-<c>');
--   its conversation 1 holds :deep_msgs messages (the deep conversation);
--   users 2..1001 own 10 conversations each, md5('conv-<u>-<c>'), sharing the other
--   :msgs - :deep_msgs messages (10 per conversation, as many conversations as needed);
--   :knowledge articles, every one containing 'postgresql' (the common term), one in
--   10,000 'quasar' (the rare term); the text varies so ts_rank varies.
\set ON_ERROR_STOP on
SET synchronous_commit = off;
BEGIN;
INSERT INTO ai_conversations (id, user_id, title, context, metadata, created_at, updated_at)
SELECT md5('conv-1-' || c)::uuid, md5('user-1')::uuid, 'Conversation ' || c || ' of the heavy user',
       jsonb_build_object('topic', 'topic-' || (c % 7)), jsonb_build_object('n', c),
       now() - interval '90 days' + c * interval '1 second',
       now() - interval '90 days' + c * interval '1 second' + interval '1 hour'
FROM generate_series(1, :heavy_convs) c;

INSERT INTO ai_conversations (id, user_id, title, context, metadata, created_at, updated_at)
SELECT md5('conv-' || u || '-' || c)::uuid, md5('user-' || u)::uuid, 'Conversation ' || c || ' of user ' || u,
       jsonb_build_object('topic', 'topic-' || (c % 7)), jsonb_build_object('n', c),
       now() - interval '60 days' + (u * 10 + c) * interval '1 second',
       now() - interval '60 days' + (u * 10 + c) * interval '1 second' + interval '1 hour'
FROM generate_series(2, 1 + greatest(1, ceil((:msgs - :deep_msgs) / 100.0)::int)) u, generate_series(1, 10) c;

-- the deep conversation
INSERT INTO ai_messages (conversation_id, role, content, resources, follow_up_suggestions, metadata, created_at)
SELECT md5('conv-1-1')::uuid, CASE WHEN m % 2 = 1 THEN 'user' ELSE 'assistant' END,
       repeat('Message ' || m || ' about pools and probes. ', 4), ARRAY['doc:' || (m % 13)],
       '{}'::text[], jsonb_build_object('tokens', 20 + m % 50),
       now() - interval '80 days' + m * interval '10 ms'
FROM generate_series(1, :deep_msgs) m;

-- the rest: 10 messages per conversation of users 2..
INSERT INTO ai_messages (conversation_id, role, content, resources, follow_up_suggestions, metadata, created_at)
SELECT md5('conv-' || (2 + (i / 100)) || '-' || (1 + (i / 10) % 10))::uuid,
       CASE WHEN i % 2 = 1 THEN 'user' ELSE 'assistant' END,
       repeat('Message ' || i || ' about pools and probes. ', 4), ARRAY['doc:' || (i % 13)],
       '{}'::text[], jsonb_build_object('tokens', 20 + i % 50),
       now() - interval '60 days' + i * interval '1 second'
FROM generate_series(0, :msgs - :deep_msgs - 1) i;

INSERT INTO knowledge_base (id, title, content, tags, metadata)
SELECT md5('kb-' || k)::uuid, 'Article ' || k || ': ' || topic,
       repeat('Guidance on ' || topic || ' for Cloud Run services. ', 1 + k % 5)
         || repeat('PostgreSQL ', 1 + k % 7)
         || CASE WHEN k % 10000 = 0 THEN ' The quasar case. ' ELSE '' END
         || repeat('Notes on connection handling and retries. ', 1 + k % 3),
       ARRAY['tag' || (k % 10)], jsonb_build_object('n', k)
FROM generate_series(1, :knowledge) k,
     LATERAL (SELECT (ARRAY['pool sizing', 'readiness probes', 'numbered migrations', 'jsonb indexing',
                            'iam authentication', 'ssl modes', 'anonymous sessions',
                            'circuit breakers'])[1 + k % 8] AS topic) x;
COMMIT;
VACUUM ANALYZE;
-- Flush the bulk load's WAL now, not in the middle of a measurement (compare does the same
-- between services).
CHECKPOINT;
