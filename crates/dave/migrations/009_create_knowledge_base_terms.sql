-- Migration: 009_create_knowledge_base_terms
-- Issue: issue 13 (knowledge search at 100,000 documents)
-- Date: 2026-11-27
-- Author: dave team
-- Description: For each article and each of its lexemes, how many positions the
--              lexeme has in search_vector (007). For a one-word query, ts_rank with
--              dave's defaults (weights {0.1, 0.2, 0.4, 1.0}, normalization 0) of a
--              to_tsvector vector (every position weight D) is a strictly increasing
--              function of that count: ranking the matches of a word is reading this
--              index in order, best first, ties by id, and stopping at the page. A
--              word that nearly every article contains then costs the page, not the
--              number of matches. Kept by a trigger on knowledge_base (any writer),
--              removed with the article (ON DELETE CASCADE). Backfilled here: about a
--              minute per million term rows on a 2-core machine, under this file's
--              transaction (knowledge_base writes wait for it).

BEGIN;

-- A lexeme appears once in a tsvector: (doc_id, word) is the row's identity,
-- and its index serves the trigger's delete and the cascade.
CREATE TABLE IF NOT EXISTS knowledge_base_terms (
    word     TEXT NOT NULL,
    npos     INTEGER NOT NULL,
    doc_id   UUID NOT NULL REFERENCES knowledge_base(id) ON DELETE CASCADE,
    PRIMARY KEY (doc_id, word)
);

-- The one-word search: WHERE word = $w ORDER BY npos DESC, doc_id LIMIT n.
CREATE UNIQUE INDEX IF NOT EXISTS idx_knowledge_base_terms_rank
    ON knowledge_base_terms (word, npos DESC, doc_id);

CREATE OR REPLACE FUNCTION knowledge_base_terms_sync()
RETURNS TRIGGER AS $$
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.search_vector IS NOT DISTINCT FROM OLD.search_vector AND NEW.id = OLD.id THEN
            RETURN NULL;
        END IF;
        DELETE FROM knowledge_base_terms WHERE doc_id = OLD.id;
    END IF;
    INSERT INTO knowledge_base_terms (word, npos, doc_id)
    SELECT t.lexeme, coalesce(cardinality(t.positions), 0), NEW.id
    FROM unnest(NEW.search_vector) AS t;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS sync_knowledge_base_terms ON knowledge_base;
CREATE TRIGGER sync_knowledge_base_terms
    AFTER INSERT OR UPDATE ON knowledge_base
    FOR EACH ROW EXECUTE FUNCTION knowledge_base_terms_sync();

-- Articles written before this file (re-runnable: the unique index skips what is there).
INSERT INTO knowledge_base_terms (word, npos, doc_id)
SELECT t.lexeme, coalesce(cardinality(t.positions), 0), k.id
FROM knowledge_base k, unnest(k.search_vector) AS t
ON CONFLICT DO NOTHING;

COMMENT ON TABLE knowledge_base_terms IS
    'Lexemes of knowledge_base.search_vector with their position counts; kept by trigger; one-word search ranks from it';
COMMENT ON COLUMN knowledge_base_terms.npos IS
    'Positions of word in the article''s search_vector: ts_rank of a one-word query grows with it';

COMMIT;
