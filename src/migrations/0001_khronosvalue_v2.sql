-- description: Create the legacy key-value table on an empty database, then convert every value from KhronosValue v1 to v2
-- replaces-checksum: 2766556f009145ec2da65d87795541cf8f5a75cfdad9ea24af35a6a98b823c85
-- replaces-checksum: 248541fe804679ec577b97e6d8d55204c14f72df5746eeffddefd0d50d87dad0

-- The checksums above are this file's earlier versions (first a recursive
-- plpgsql function returning jsonb, then string_agg instead of ARRAY below),
-- which convert exactly the same way: databases they migrated stay up to date.

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

-- KhronosValue v1 (untagged) -> v2 (externally tagged), recursively, in one
-- set-based UPDATE. Two choices make it about 1.75x faster than a recursive
-- plpgsql function returning jsonb (bench/README.md): each v2 value is built
-- as JSON text and parsed once (a jsonb built level by level is copied again
-- at every level above it), and containers up to five levels deep are
-- converted by subqueries nested in the UPDATE itself instead of function
-- calls that each plan and run a query through SPI.
-- Each container's items are gathered with ARRAY(… ORDER BY ord): the
-- function scan already returns them in ordinality order, so unlike
-- string_agg(… ORDER BY ord) it sorts nothing (about 20 % faster on
-- PostgreSQL 15) and the order is still guaranteed.
-- The functions are temporary: they exist only for this migration's session.

-- The two errors, which abort the migration and name the row.
CREATE FUNCTION pg_temp.khronos_reject(v jsonb, row_id text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $fn$
BEGIN
  IF jsonb_typeof(v) = 'number' THEN
    RAISE EXCEPTION 'khronosvalue_v2: row id %: integer % is outside the safe range (abs must be < 2^53)', row_id, v::numeric
      USING ERRCODE = 'numeric_value_out_of_range',
            HINT = 'Store it as a string or a float in the application, then run the migration again.';
  END IF;
  RAISE EXCEPTION 'khronosvalue_v2: row id %: buffer values are not supported in v2', row_id
    USING ERRCODE = 'invalid_parameter_value',
          HINT = 'Buffers must use the blob API: move this value there (or delete the row), then run the migration again.';
END
$fn$;

-- The SQL expression (of type text) converting the jsonb expression `v` of the
-- row `row_id`. Scalars and tagged values are converted in place; containers
-- by subqueries nested up to `levels` deep, and below that by
-- pg_temp.khronos_v1_to_v2, which is built from this expression too. Numbers:
-- an integer (scale 0) below 2^53 in magnitude is an Integer, one from 2^53
-- to 2^64 is refused, every other number is a Float. Every branch must give
-- text, never NULL: array_to_string would silently drop a NULL element.
CREATE FUNCTION pg_temp.khronos_expression(v text, row_id text, levels int) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $fn$
DECLARE
  item text := 'item' || levels;      -- one alias per level, so nested subqueries never shadow each other
  member text := 'member' || levels;
  list text := format('pg_temp.khronos_v1_to_v2(%s, %s)', v, row_id);
  map text := list;
BEGIN
  IF levels > 0 THEN
    list := format($expr$'{"List":[' || array_to_string(
      ARRAY(SELECT %s FROM jsonb_array_elements(%3$s) WITH ORDINALITY AS %2$s(value, ord) ORDER BY %2$s.ord),
      ',') || ']}'$expr$,
      pg_temp.khronos_expression(item || '.value', row_id, levels - 1), item, v);
    map := format($expr$'{"Map":[' || array_to_string(
      ARRAY(SELECT '[{"Text":' || to_json(%2$s.key)::text || '},' || %1$s || ']'
         FROM jsonb_each(%3$s) WITH ORDINALITY AS %2$s(key, value, ord) ORDER BY %2$s.ord),
      ',') || ']}'$expr$,
      pg_temp.khronos_expression(member || '.value', row_id, levels - 1), member, v);
  END IF;
  RETURN format($expr$CASE jsonb_typeof(%1$s)
  WHEN 'null' THEN '{"Null":null}'
  WHEN 'boolean' THEN '{"Boolean":' || %1$s::text || '}'
  WHEN 'string' THEN '{"Text":' || %1$s::text || '}'
  WHEN 'number' THEN CASE
    WHEN scale(%1$s::numeric) <> 0 OR abs(%1$s::numeric) >= 18446744073709551616 THEN '{"Float":' || %1$s::text || '}'
    WHEN abs(%1$s::numeric) < 9007199254740992 THEN '{"Integer":' || %1$s::text || '}'
    ELSE pg_temp.khronos_reject(%1$s, %2$s) END
  WHEN 'array' THEN %3$s
  ELSE CASE %1$s ->> '___khronosValType___'
    WHEN 'vector' THEN '{"Vector":' || COALESCE(%1$s -> 'value', 'null')::text || '}'
    WHEN 'timestamptz' THEN '{"Timestamptz":' || COALESCE(%1$s -> 'value', 'null')::text || '}'
    WHEN 'interval' THEN '{"Interval":' || COALESCE(%1$s -> 'value', 'null')::text || '}'
    WHEN 'timezone' THEN '{"TimeZone":' || COALESCE(%1$s -> 'value', 'null')::text || '}'
    WHEN 'buffer' THEN pg_temp.khronos_reject(%1$s, %2$s)
    ELSE %4$s
  END
END$expr$, v, row_id, list, map);
END
$fn$;

DO $$
BEGIN
  -- Containers deeper than five levels go through this function, one level per
  -- call: each call runs its whole plan, so that plan must stay small.
  EXECUTE format(
    'CREATE FUNCTION pg_temp.khronos_v1_to_v2(v jsonb, row_id text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS %L',
    format('BEGIN RETURN %s; END', pg_temp.khronos_expression('v', 'row_id', 1)));
  -- One set-based statement: every row converts or none does.
  EXECUTE format(
    'UPDATE guild_templates_kv SET value = (%s)::jsonb',
    pg_temp.khronos_expression('guild_templates_kv.value', 'guild_templates_kv.id', 5));
END
$$;

DROP FUNCTION pg_temp.khronos_v1_to_v2(jsonb, text);
DROP FUNCTION pg_temp.khronos_expression(text, text, int);
DROP FUNCTION pg_temp.khronos_reject(jsonb, text);
