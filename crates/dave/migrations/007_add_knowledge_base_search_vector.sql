-- Migration: 007_add_knowledge_base_search_vector
-- Issue: issue 13 (knowledge search at 100,000 documents)
-- Date: 2026-11-27
-- Author: dave team
-- Description: The article's tsvector, stored: search ranked every match with
--              ts_rank(to_tsvector(...)), parsing each matching article again on
--              every request (0.9-1.4 s for a term in nearly all of 100,000
--              articles). A generated column is computed once per write, by the
--              database, so no writer (dave, the Python reference, psql) can
--              forget it. Adding it rewrites the table under an exclusive lock
--              (about 20 s for 100,000 short articles on a 2-core machine): run
--              it when writes to knowledge_base may wait. Its GIN index is 008.
--              idx_knowledge_base_fts (004) stays: the Python reference searches
--              with that expression on a shared database.

BEGIN;

ALTER TABLE knowledge_base ADD COLUMN IF NOT EXISTS search_vector tsvector
    GENERATED ALWAYS AS (to_tsvector('english', title || ' ' || content)) STORED;

COMMENT ON COLUMN knowledge_base.search_vector IS
    'to_tsvector(''english'', title || '' '' || content), generated; searched with @@ and ranked with ts_rank';

COMMIT;
