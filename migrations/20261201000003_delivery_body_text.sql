-- A GitHub delivery's body is kept as the text GitHub signed, not as jsonb (docs/benchmarks.md,
-- "The intake's storage"): the intake already checks that it is a JSON object, nothing queries
-- inside it in SQL, and turning 7 KB of JSON into jsonb took most of an INSERT's time. Bodies
-- are compressed with lz4 where the server has it (PostgreSQL 14+ built with lz4), which is
-- several times cheaper than the default pglz for the same job.
ALTER TABLE github_deliveries ALTER COLUMN body TYPE text USING body::text;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_settings
               WHERE name = 'default_toast_compression' AND 'lz4' = ANY (enumvals)) THEN
        ALTER TABLE github_deliveries ALTER COLUMN body SET COMPRESSION lz4;
    END IF;
END $$;
