import type postgres from 'postgres'

import {SQLSTATE, isPgError} from './errors.js'

/** Template Worker's own table name and shape; the Rust worker reads and writes it too. */
export const LEDGER_TABLE = '_migrations_applied'

/** Columns tw-db adds (nullable) to the Rust worker's `(id, applied_at)` table. */
const EXTRA_COLUMNS = [
  ['checksum', 'TEXT'],
  ['duration_ms', 'INTEGER'],
  ['applied_by', 'TEXT'],
] as const

export interface LedgerRow {
  readonly id: string
  readonly appliedAt: Date | null
  /** null for rows written by the Rust worker, which records no checksum. */
  readonly checksum: string | null
  readonly durationMs: number | null
  readonly appliedBy: string | null
}

/** Anything that can run a query: a pool, a reserved connection or a transaction. */
type Queryable = postgres.Sql | postgres.ReservedSql | postgres.TransactionSql

/**
 * Reads the ledger without creating or altering anything. Returns null when
 * the table does not exist. Rows are read as jsonb so that any shape (the
 * Rust worker's two columns or tw-db's five) reads in one round trip.
 */
export async function readLedger(sql: Queryable): Promise<LedgerRow[] | null> {
  let rows: Array<{row: Record<string, unknown>}>
  try {
    rows = await sql<Array<{row: Record<string, unknown>}>>`select to_jsonb(m) as row from ${sql(LEDGER_TABLE)} m`
  } catch (error) {
    if (isPgError(error) && error.code === SQLSTATE.UNDEFINED_TABLE) return null
    throw error
  }
  return rows.map(({row}) => ({
    id: String(row.id),
    appliedAt: typeof row.applied_at === 'string' ? new Date(row.applied_at) : null,
    checksum: typeof row.checksum === 'string' ? row.checksum : null,
    durationMs: typeof row.duration_ms === 'number' ? row.duration_ms : null,
    appliedBy: typeof row.applied_by === 'string' ? row.applied_by : null,
  }))
}

/**
 * Creates the ledger in the Rust worker's exact shape when it is missing, then
 * adds tw-db's nullable columns that are missing (and only those, so an
 * up-to-date ledger is never locked by an ALTER).
 * Must run under the migration advisory lock.
 */
export async function ensureLedger(sql: Queryable): Promise<void> {
  const columns = await sql<Array<{name: string}>>`
    select attname as name from pg_attribute
    where attrelid = to_regclass(${LEDGER_TABLE}) and attnum > 0 and not attisdropped`
  if (columns.length === 0) {
    await sql`create table ${sql(LEDGER_TABLE)} (id text primary key, applied_at timestamptz not null default now())`
  }
  const present = new Set(columns.map((c) => c.name))
  const missing = EXTRA_COLUMNS.filter(([name]) => !present.has(name))
  if (missing.length === 0) return
  // Identifiers and types come from the constant above, never from input.
  const additions = missing.map(([name, type]) => `add column ${name} ${type}`).join(', ')
  await sql.unsafe(`alter table ${LEDGER_TABLE} ${additions}`)
}

export interface LedgerEntry {
  id: string
  checksum: string
  durationMs: number
  appliedBy: string
}

/** Records a migration; call it inside the migration's own transaction. */
export async function recordMigration(tx: Queryable, entry: LedgerEntry): Promise<void> {
  await tx`
    insert into ${tx(LEDGER_TABLE)} (id, checksum, duration_ms, applied_by)
    values (${entry.id}, ${entry.checksum}, ${Math.round(entry.durationMs)}, ${entry.appliedBy})`
}
