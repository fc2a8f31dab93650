-- Migration: 008_index_knowledge_base_search_vector
-- Issue: issue 13 (knowledge search at 100,000 documents)
-- Date: 2026-11-27
-- Author: dave team
-- Description: GIN index on the stored tsvector (007), built without blocking
--              writes. Knowledge search filters with search_vector @@ query.
-- pgkit:no-transaction

CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_knowledge_base_search_vector
    ON knowledge_base USING GIN (search_vector);
