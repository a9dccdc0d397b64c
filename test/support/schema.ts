/** Read-only queries the tests use to check a database after tw-db ran. */
import type postgres from 'postgres'

export interface Column {
  name: string
  type: string
  nullable: boolean
  default: string | null
}

export async function columnsOf(sql: postgres.Sql, table: string): Promise<Column[]> {
  const rows = await sql<Column[]>`
    select a.attname as name, format_type(a.atttypid, a.atttypmod) as type,
           not a.attnotnull as nullable, pg_get_expr(d.adbin, d.adrelid) as default
    from pg_attribute a left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
    where a.attrelid = to_regclass(${table}) and a.attnum > 0 and not a.attisdropped
    order by a.attnum`
  return rows.map((r) => ({...r}))
}

export async function tableExists(sql: postgres.Sql, table: string): Promise<boolean> {
  const [row] = await sql`select to_regclass(${table}) is not null as exists`
  return row.exists
}

export interface LedgerRow {
  id: string
  checksum: string | null
  duration_ms: number | null
  applied_by: string | null
}

/** The ledger in applied order; [] when it does not exist. */
export async function ledgerRows(sql: postgres.Sql): Promise<LedgerRow[]> {
  if (!(await tableExists(sql, '_migrations_applied'))) return []
  const rows = await sql`select to_jsonb(m) as row from _migrations_applied m order by applied_at, id`
  return rows.map(({row}) => ({id: row.id, checksum: row.checksum ?? null, duration_ms: row.duration_ms ?? null, applied_by: row.applied_by ?? null}))
}

/** The legacy table exactly as SPEC.md section 4 gives it (what old Template Worker databases hold). */
export async function createLegacyTable(sql: postgres.Sql): Promise<void> {
  await sql.unsafe(`
    create extension if not exists "uuid-ossp";
    create table guild_templates_kv (
      id text primary key default uuid_generate_v4()::text,
      guild_id text not null,
      key text not null,
      value jsonb not null default 'null'::jsonb,
      scopes text[] not null default '{}'::text[],
      created_at timestamptz not null default now(),
      last_updated_at timestamptz not null default now(),
      expires_at timestamptz,
      resume boolean not null default false,
      expiry_event_call_attempts integer not null default 0,
      constraint kv_unique_entry unique (guild_id, key, scopes)
    );`)
}

/** Whether a tw-db session (or a pg tool it started) is waiting for a lock: the moment a test interrupts it. */
export async function twDbWaitsForALock(sql: postgres.Sql): Promise<boolean> {
  const [{waiting}] = await sql`select count(*)::int as waiting from pg_stat_activity where application_name = 'tw-db' and wait_event_type = 'Lock'`
  return waiting > 0
}
