-- description: Create the legacy key-value table on an empty database, then convert every value from KhronosValue v1 to v2

-- An empty database gets the table the Rust worker's first schema had, so
-- every later migration starts from the same place.
DO $$
BEGIN
  IF to_regclass('guild_templates_kv') IS NULL AND to_regclass('tenant_kv') IS NULL THEN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'uuid-ossp') THEN
      CREATE EXTENSION "uuid-ossp";
    END IF;
    CREATE TABLE guild_templates_kv (
      id TEXT PRIMARY KEY DEFAULT uuid_generate_v4()::text,
      guild_id TEXT NOT NULL,
      key TEXT NOT NULL,
      value JSONB NOT NULL DEFAULT 'null'::jsonb,
      scopes TEXT[] NOT NULL DEFAULT '{}'::text[],
      created_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
      last_updated_at TIMESTAMPTZ NOT NULL DEFAULT NOW(),
      expires_at TIMESTAMPTZ,
      resume BOOLEAN NOT NULL DEFAULT FALSE,
      expiry_event_call_attempts INTEGER NOT NULL DEFAULT 0,
      CONSTRAINT kv_unique_entry UNIQUE (guild_id, key, scopes)
    );
  END IF;
END
$$;

-- KhronosValue v1 (untagged) -> v2 (externally tagged), recursively.
-- A temporary function: it exists only for this migration's session.
CREATE FUNCTION pg_temp.khronos_v1_to_v2(v jsonb, row_id text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
  n numeric;
  magnitude numeric;
BEGIN
  CASE jsonb_typeof(v)
    WHEN 'null' THEN
      RETURN '{"Null": null}'::jsonb;
    WHEN 'boolean' THEN
      RETURN jsonb_build_object('Boolean', v);
    WHEN 'string' THEN
      RETURN jsonb_build_object('Text', v);
    WHEN 'number' THEN
      n := v::numeric;
      magnitude := abs(n);
      IF scale(n) = 0 AND magnitude < 9007199254740992 THEN          -- 2^53
        RETURN jsonb_build_object('Integer', v);
      ELSIF scale(n) = 0 AND magnitude < 18446744073709551616 THEN   -- 2^64
        RAISE EXCEPTION 'khronosvalue_v2: row id %: integer % is outside the safe range (abs must be < 2^53)', row_id, n
          USING ERRCODE = 'numeric_value_out_of_range',
                HINT = 'Store it as a string or a float in the application, then run the migration again.';
      END IF;
      RETURN jsonb_build_object('Float', v);
    WHEN 'array' THEN
      RETURN jsonb_build_object('List', COALESCE(
        (SELECT jsonb_agg(pg_temp.khronos_v1_to_v2(item, row_id) ORDER BY ord)
           FROM jsonb_array_elements(v) WITH ORDINALITY AS e(item, ord)),
        '[]'::jsonb));
    ELSE -- object
      CASE v ->> '___khronosValType___'
        WHEN 'vector' THEN RETURN jsonb_build_object('Vector', v -> 'value');
        WHEN 'timestamptz' THEN RETURN jsonb_build_object('Timestamptz', v -> 'value');
        WHEN 'interval' THEN RETURN jsonb_build_object('Interval', v -> 'value');
        WHEN 'timezone' THEN RETURN jsonb_build_object('TimeZone', v -> 'value');
        WHEN 'buffer' THEN
          RAISE EXCEPTION 'khronosvalue_v2: row id %: buffer values are not supported in v2', row_id
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Buffers must use the blob API: move this value there (or delete the row), then run the migration again.';
        ELSE
          RETURN jsonb_build_object('Map', COALESCE(
            (SELECT jsonb_agg(jsonb_build_array(jsonb_build_object('Text', key), pg_temp.khronos_v1_to_v2(value, row_id)) ORDER BY ord)
               FROM jsonb_each(v) WITH ORDINALITY AS e(key, value, ord)),
            '[]'::jsonb));
      END CASE;
  END CASE;
END
$fn$;

-- One set-based statement: every row converts or none does.
UPDATE guild_templates_kv SET value = pg_temp.khronos_v1_to_v2(value, id);

DROP FUNCTION pg_temp.khronos_v1_to_v2(jsonb, text);
