-- Seed: 001_dave_system_prompts
-- Issue: DESIGN §4 (dave seeds)
-- Date: 2026-11-26
-- Author: dave team
-- Description: Dave's default system prompts, as versioned prompts
--              (admin_prompts + admin_prompt_versions).
--
-- Idempotent: run it any number of times; a second run changes nothing.
--   * a prompt is created when missing; its description follows this file
--     (descriptions have no API, the seed owns them);
--   * each listed version is inserted when that (prompt, version_number) is free,
--     and never overwritten: an admin's own version with the same number wins;
--   * a version this run inserted becomes current only when the prompt has no
--     current version yet or its current version is a seeded one (created_by IS
--     NULL): an admin's choice (own version or rollback) is never overridden.
-- To change a default prompt later, add a row with the next version_number in a
-- new seed file; never edit a version that has shipped.

BEGIN;

DO $$
DECLARE
    seed         record;
    v_prompt_id  uuid;
    v_inserted   integer;
BEGIN
    FOR seed IN
        SELECT * FROM (VALUES
            ('system', 'default',
             'Default system prompt for every conversation',
             1,
             'You are Dave, a helpful assistant for teams that run services on Google Cloud Run '
             'with Cloud SQL for PostgreSQL. Answer precisely and briefly. When you are not sure, '
             'say so and say what would settle it. Prefer concrete steps, commands and SQL over '
             'general advice, and point to the knowledge base articles you used.',
             'Initial default system prompt'),
            ('system', 'follow_up_suggestions',
             'Asks the model for follow-up questions the user may want to ask next',
             1,
             'Given the conversation so far, suggest at most three short follow-up questions the '
             'user is likely to ask next. Each is one sentence, specific to the conversation, and '
             'different from the others. Return them as a JSON array of strings.',
             'Initial follow-up suggestions prompt'),
            ('system', 'conversation_title',
             'Names a conversation from its first messages',
             1,
             'Write a title of at most eight words for this conversation, in the language of the '
             'user. No quotes, no trailing punctuation.',
             'Initial conversation title prompt')
        ) AS v(category, name, description, version_number, content, commit_message)
    LOOP
        INSERT INTO admin_prompts (category, name, description)
        VALUES (seed.category, seed.name, seed.description)
        ON CONFLICT (category, name) DO UPDATE
            SET description = EXCLUDED.description
            WHERE admin_prompts.description IS DISTINCT FROM EXCLUDED.description;

        SELECT p.id INTO v_prompt_id
        FROM admin_prompts p
        WHERE p.category = seed.category AND p.name = seed.name;

        INSERT INTO admin_prompt_versions (prompt_id, version_number, content, commit_message)
        VALUES (v_prompt_id, seed.version_number, seed.content, seed.commit_message)
        ON CONFLICT (prompt_id, version_number) DO NOTHING;
        GET DIAGNOSTICS v_inserted = ROW_COUNT;

        IF v_inserted = 1 THEN
            UPDATE admin_prompts p
            SET current_version = seed.version_number
            WHERE p.id = v_prompt_id
              AND (p.current_version IS NULL OR EXISTS (
                    SELECT 1 FROM admin_prompt_versions v
                    WHERE v.prompt_id = p.id
                      AND v.version_number = p.current_version
                      AND v.created_by IS NULL
                      AND v.version_number < seed.version_number));
        END IF;
    END LOOP;
END
$$;

COMMIT;
