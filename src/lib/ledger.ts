import type postgres from 'postgres'

import {SQLSTATE, isPgError} from './errors.js'
import {quoteLiteral} from './sql-text.js'

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

export interface Ledger {
  readonly rows: LedgerRow[]
  /** The table's column names, so that adding tw-db's needs no catalog query. */
  readonly columns: readonly string[]
}

/**
 * Reads the ledger without creating or altering anything, in one round trip
 * whatever its shape (the Rust worker's two columns or tw-db's five). Returns
 * null when the table does not exist.
 */
export async function readLedger(sql: Queryable): Promise<Ledger | null> {
  let result: postgres.RowList<Array<Record<string, unknown>>>
  try {
    result = await sql<Array<Record<string, unknown>>>`select * from ${sql(LEDGER_TABLE)}`
  } catch (error) {
    if (isPgError(error) && error.code === SQLSTATE.UNDEFINED_TABLE) return null
    throw error
  }
  return {rows: result.map(toLedgerRow), columns: result.columns.map((column) => column.name)}
}

function toLedgerRow(row: Record<string, unknown>): LedgerRow {
  return {
    id: String(row.id),
    appliedAt: row.applied_at instanceof Date ? row.applied_at : typeof row.applied_at === 'string' ? new Date(row.applied_at) : null,
    checksum: typeof row.checksum === 'string' ? row.checksum : null,
    durationMs: typeof row.duration_ms === 'number' ? row.duration_ms : null,
    appliedBy: typeof row.applied_by === 'string' ? row.applied_by : null,
  }
}

/**
 * Creates the ledger when it is missing (`columns` null): the Rust worker's
 * exact table plus tw-db's nullable columns. Otherwise adds the tw-db columns
 * it lacks, and only those, so an up-to-date ledger is never locked by an ALTER.
 * Must run under the migration advisory lock.
 */
export async function ensureLedger(sql: Queryable, columns: readonly string[] | null): Promise<void> {
  // Identifiers and types come from the constants above, never from input.
  if (columns === null) {
    const extra = EXTRA_COLUMNS.map(([name, type]) => `, ${name} ${type}`).join('')
    await sql.unsafe(`create table ${LEDGER_TABLE} (id text primary key, applied_at timestamptz not null default now()${extra})`)
    return
  }
  const missing = EXTRA_COLUMNS.filter(([name]) => !columns.includes(name))
  if (missing.length === 0) return
  await sql.unsafe(`alter table ${LEDGER_TABLE} ${missing.map(([name, type]) => `add column ${name} ${type}`).join(', ')}`)
}

/**
 * Set by each ledger row's INSERT, in its transaction: a rollback undoes it,
 * so it names the last migration this session recorded and committed.
 */
const LAST_RECORDED_SETTING = 'tw_db.last_recorded'

/**
 * A query that fails (division by zero) unless the last migration this session
 * recorded and committed is `id`. A migration sent before the previous one has
 * answered starts with it, so that it aborts, and runs nothing, when the
 * previous one did not commit.
 */
export function requireRecordedSql(id: string): string {
  return `select 1 / (coalesce(current_setting('${LAST_RECORDED_SETTING}', true), '') = ${quoteLiteral(id)})::int`
}

export interface LedgerEntry {
  id: string
  checksum: string
  /** Omitted: the server's own time since the transaction began, for a row sent along with its migration. */
  durationMs?: number
  appliedBy: string
}

const DURATION_SINCE_BEGIN = '(extract(epoch from clock_timestamp() - transaction_timestamp()) * 1000)::integer'

/**
 * Records a migration inside the migration's own transaction; returns the
 * duration recorded, in ms. The values are inlined as literals: a query without
 * parameters needs no round trip to be prepared first, so it can go in the same
 * write as the migration. It is sent at once, before whatever the caller sends next.
 */
export async function recordMigration(tx: Queryable, entry: LedgerEntry): Promise<number> {
  const duration = entry.durationMs === undefined ? DURATION_SINCE_BEGIN : String(Math.round(entry.durationMs))
  const id = quoteLiteral(entry.id)
  const [row] = await tx.unsafe<Array<{duration_ms: number}>>(
    `insert into ${LEDGER_TABLE} (id, checksum, duration_ms, applied_by)
    values (${id}, ${quoteLiteral(entry.checksum)}, ${duration}, ${quoteLiteral(entry.appliedBy)})
    returning duration_ms, set_config('${LAST_RECORDED_SETTING}', ${id}, false)`,
  ).execute()
  return row.duration_ms
}
