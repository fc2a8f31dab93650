-- Migration: 001_create_updated_at_function
-- Issue: DESIGN §4 (dave database layout)
-- Date: 2026-11-26
-- Author: dave team
-- Description: Shared trigger function that stamps updated_at on every UPDATE.
--              Later files redefine it too (CREATE OR REPLACE), so each one also
--              runs on its own with psql -f or gcloud sql import sql.

BEGIN;

CREATE OR REPLACE FUNCTION update_updated_at_column()
RETURNS TRIGGER AS $$
BEGIN
    NEW.updated_at = NOW();
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

COMMENT ON FUNCTION update_updated_at_column() IS 'Sets updated_at = NOW() on UPDATE (attached per table)';

COMMIT;
