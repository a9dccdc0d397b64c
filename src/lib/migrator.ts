import path from 'node:path'
import {setImmediate as nextTurn, setTimeout as sleep} from 'node:timers/promises'

import {isEmbedded, reserveSession, type ReservedSql, type Sql} from './connection.js'
import {EXIT, SQLSTATE, TwDbError, isPgError, sessionSurvives, usageError, type PgErrorLike} from './errors.js'
import {ensureLedger, readLedger, recordMigration, requireRecordedSql, type LedgerRow} from './ledger.js'
import {refuseOwnTransactions, type Migration} from './registry.js'
import {characterOffset, positionToLineColumn, splitStatements} from './sql-text.js'

/**
 * Key of the session advisory lock that serialises migrate runs: the bytes
 * of "tw-db" read as one integer (0x74772d6462). Documented in README.md.
 */
export const ADVISORY_LOCK_KEY = 500_215_669_858n

/** How a 55P03 lock timeout inside a migration is retried (SPEC.md section 6). */
export const LOCK_RETRY_DELAYS_MS = [1000, 2000, 4000] as const

// ---------------------------------------------------------------- plan (pure)

export type MigrationState = 'applied' | 'pending' | 'modified' | 'unknown'

export interface PlanEntry {
  readonly id: string
  readonly state: MigrationState
  /** Absent for `unknown` entries, which only the ledger knows. */
  readonly migration?: Migration
  readonly ledger?: LedgerRow
}

export type Problem =
  | {readonly kind: 'modified'; readonly id: string; readonly recorded: string; readonly current: string}
  | {readonly kind: 'out-of-order'; readonly id: string; readonly appliedAfter: string}
  | {readonly kind: 'unknown'; readonly id: string}

export interface Plan {
  /** Every migration of the registry in order, then the ledger's unknown ones. */
  readonly entries: readonly PlanEntry[]
  readonly pending: readonly Migration[]
  readonly problems: readonly Problem[]
}

export function plan(migrations: readonly Migration[], ledger: readonly LedgerRow[]): Plan {
  const recorded = new Map(ledger.map((row) => [row.id, row]))
  const entries: PlanEntry[] = []
  const problems: Problem[] = []
  const pending: Migration[] = []
  let lastApplied: string | undefined

  for (const migration of migrations) {
    const row = recorded.get(migration.id)
    if (!row) {
      entries.push({id: migration.id, state: 'pending', migration})
      pending.push(migration)
      continue
    }
    // A row without checksum was written by the Rust worker: applied, nothing to compare.
    const modified = row.checksum !== null && row.checksum !== migration.checksum && !migration.replacedChecksums.includes(row.checksum)
    entries.push({id: migration.id, state: modified ? 'modified' : 'applied', migration, ledger: row})
    if (modified) problems.push({kind: 'modified', id: migration.id, recorded: row.checksum!, current: migration.checksum})
    lastApplied = migration.id
  }

  if (lastApplied !== undefined) {
    const lastAppliedIndex = migrations.findIndex((m) => m.id === lastApplied)
    for (const migration of pending) {
      if (migrations.indexOf(migration) < lastAppliedIndex) problems.push({kind: 'out-of-order', id: migration.id, appliedAfter: lastApplied})
    }
  }

  const known = new Set(migrations.map((m) => m.id))
  const unknown = ledger
    .filter((row) => !known.has(row.id))
    .sort((a, b) => (a.appliedAt?.getTime() ?? 0) - (b.appliedAt?.getTime() ?? 0) || a.id.localeCompare(b.id))
  for (const row of unknown) {
    entries.push({id: row.id, state: 'unknown', ledger: row})
    problems.push({kind: 'unknown', id: row.id})
  }

  return {entries, pending, problems}
}

/** Splits the pending migrations at `--target`: those to apply now, and those left. */
export function selectTarget(
  migrations: readonly Migration[],
  pending: readonly Migration[],
  target?: string,
): {toApply: Migration[]; remaining: Migration[]} {
  if (target === undefined) return {toApply: [...pending], remaining: []}
  const targetIndex = migrations.findIndex((m) => m.id === target)
  if (targetIndex === -1) {
    throw usageError(`unknown --target "${target}": no migration has that id`, `Known ids: ${migrations.map((m) => m.id).join(', ')}.`)
  }
  const toApply = pending.filter((m) => migrations.indexOf(m) <= targetIndex)
  const remaining = pending.filter((m) => migrations.indexOf(m) > targetIndex)
  return {toApply, remaining}
}

/** The refusals of SPEC.md section 6, from a plan's problems. */
export function refusal(problems: readonly Problem[], options: {ignoreChecksums?: boolean}): TwDbError | undefined {
  const modified = problems.filter((p) => p.kind === 'modified')
  if (modified.length > 0 && !options.ignoreChecksums) {
    const first = modified[0] as Extract<Problem, {kind: 'modified'}>
    return new TwDbError(
      'E_CHECKSUM',
      `applied migration${modified.length > 1 ? 's' : ''} ${modified.map((p) => p.id).join(', ')} changed since ${modified.length > 1 ? 'they were' : 'it was'} applied (recorded checksum ${first.recorded.slice(0, 12)}, file ${first.current.slice(0, 12)})`,
      {hint: 'Restore the original file (an applied migration must never change; add a new migration instead), or pass --ignore-checksums if the change is cosmetic.'},
    )
  }
  const outOfOrder = problems.filter((p) => p.kind === 'out-of-order')
  if (outOfOrder.length > 0) {
    const first = outOfOrder[0] as Extract<Problem, {kind: 'out-of-order'}>
    return new TwDbError(
      'E_OUT_OF_ORDER',
      `pending migration${outOfOrder.length > 1 ? 's' : ''} ${outOfOrder.map((p) => p.id).join(', ')} sort${outOfOrder.length > 1 ? '' : 's'} before the applied migration ${first.appliedAfter}`,
      {hint: 'Renumber the new migration after the last applied one; applying it now would run migrations out of order.'},
    )
  }
  return undefined
}

// ---------------------------------------------------------------- status

export interface StatusRow {
  id: string
  description: string | null
  state: MigrationState
  appliedAt: string | null
  durationMs: number | null
  /** The registry file's checksum (null for unknown migrations). */
  checksum: string | null
  /** The ledger's checksum (null when pending or recorded by the Rust worker). */
  recordedChecksum: string | null
}

export interface StatusReport {
  migrations: StatusRow[]
  summary: Record<MigrationState, number>
}

export function statusReport(p: Plan): StatusReport {
  const summary: Record<MigrationState, number> = {applied: 0, pending: 0, modified: 0, unknown: 0}
  const migrations = p.entries.map((entry): StatusRow => {
    summary[entry.state]++
    return {
      id: entry.id,
      description: entry.migration?.description ?? null,
      state: entry.state,
      appliedAt: entry.ledger?.appliedAt?.toISOString() ?? null,
      durationMs: entry.ledger?.durationMs ?? null,
      checksum: entry.migration?.checksum ?? null,
      recordedChecksum: entry.ledger?.checksum ?? null,
    }
  })
  return {migrations, summary}
}

export function isUpToDate(report: StatusReport): boolean {
  return report.summary.pending === 0 && report.summary.modified === 0 && report.summary.unknown === 0
}

/**
 * The state of every migration. Read-only: never creates the ledger, so it
 * works on replicas and untouched databases. The ledger query goes out before
 * the registry is read (`loadMigrations`): the server takes longer to open a
 * session and answer than tw-db takes to read the files. A registry error
 * still comes first, as if it had been read before connecting.
 */
export async function readStatus(sql: Sql, loadMigrations: () => Promise<readonly Migration[]>): Promise<StatusReport> {
  const ledger = readLedger(sql)
  ledger.catch(() => undefined) // awaited below, unless the registry fails first
  // Let the query start connecting before the files are read synchronously. (postgres.js
  // connects from a zero-delay timer, so this sometimes still comes first: correct either way.)
  await new Promise(setImmediate)
  const migrations = await loadMigrations()
  return statusReport(plan(migrations, (await ledger)?.rows ?? []))
}

// ---------------------------------------------------------------- apply (effectful)

export interface LockHolder {
  pid: number
  applicationName: string
  since: string | null
}

export type MigrateEvent =
  | {type: 'lock-wait'; holder: LockHolder | null; timeoutSeconds: number}
  | {type: 'retry'; id: string; attempt: number; of: number; delayMs: number; reason: string}
  | {type: 'applied'; id: string; description: string; durationMs: number}
  | {type: 'warning'; message: string}

export interface MigrateOptions {
  migrations: readonly Migration[]
  target?: string
  dryRun?: boolean
  singleTransaction?: boolean
  ignoreChecksums?: boolean
  /** Seconds to wait for another run's advisory lock; 0 means do not wait. */
  lockTimeout: number
  /** Seconds for SET LOCAL lock_timeout inside each migration; 0 means no limit. */
  statementLockTimeout: number
  /** Recorded in the ledger's applied_by column. */
  appliedBy: string
  onEvent?: (event: MigrateEvent) => void
  /** Pauses between 55P03 retries; injectable so pure tests need not wait. */
  retryDelaysMs?: readonly number[]
  /** Aborting (Ctrl-C) cancels the running statement; its transaction rolls back and nothing else runs. */
  signal?: AbortSignal
}

export interface AppliedMigration {
  id: string
  description: string
  durationMs: number
  checksum: string
}

export interface PlannedMigration {
  id: string
  description: string
  checksum: string
  transaction: boolean
  sql: string
}

export interface MigrateResult {
  applied: AppliedMigration[]
  /** Ids still pending afterwards (those after --target, or all of them on --dry-run). */
  pending: string[]
  upToDate: boolean
  dryRun: boolean
  /** On --dry-run: what would run, in order. */
  planned?: PlannedMigration[]
}

export async function migrate(sql: Sql, options: MigrateOptions): Promise<MigrateResult> {
  if (options.dryRun) return dryRun(sql, options)
  const emit = options.onEvent ?? (() => undefined)
  return withMigrationLock(sql, options, async (reserved) => {
    const ledger = await readLedger(reserved)
    const p = plan(options.migrations, ledger?.rows ?? [])
    const refused = refusal(p.problems, options)
    if (refused) throw refused
    const {toApply, remaining} = selectTarget(options.migrations, p.pending, options.target)
    refuseOwnTransactions(toApply)
    // Only a run that goes ahead creates (or completes) the ledger.
    await ensureLedger(reserved, ledger?.columns ?? null)
    warnAboutProblems(p, emit)

    const applied = options.singleTransaction
      ? await applyInOneTransaction(reserved, toApply, options, emit)
      : await applyEach(reserved, toApply, {...options, pipelined: !isEmbedded(sql)}, emit)
    return {applied, pending: remaining.map((m) => m.id), upToDate: remaining.length === 0, dryRun: false}
  })
}

/**
 * Runs `fn` on one reserved session holding the migration advisory lock
 * (waiting up to `lockTimeout` seconds for another holder), after refusing a
 * standby. Whatever changes the schema (migrate, reset) goes through here.
 */
export async function withMigrationLock<T>(
  sql: Sql,
  options: {lockTimeout: number; onEvent?: (event: MigrateEvent) => void; signal?: AbortSignal},
  fn: (reserved: ReservedSql) => Promise<T>,
): Promise<T> {
  const reserved = await reserveSession(sql)
  let locked = false
  let alive = true
  try {
    // The key is a constant: no parameter, so no extra round trip to describe one.
    // From PostgreSQL 14 the server also checks every second that tw-db is still
    // there, so a killed tw-db's backend stops rather than finishing its migration.
    const [state] = await reserved.unsafe<Array<{standby: boolean; locked: boolean}>>(`
      select pg_is_in_recovery() as standby, pg_try_advisory_lock(${ADVISORY_LOCK_KEY}) as locked,
        case when current_setting('server_version_num')::int >= 140000
          then set_config('client_connection_check_interval', '1000', false) end as dead_client_check`)
    locked = state.locked
    if (state.standby) throw standbyError()
    if (!locked) {
      await waitForLock(reserved, options.lockTimeout, options.onEvent ?? (() => undefined), options.signal)
      locked = true
    }
    return await fn(reserved)
  } catch (error) {
    // tw-db's own errors (refusals, wrapped failures) carry the original failure as their cause.
    const original = error instanceof TwDbError ? error.cause : error
    alive = original === undefined || sessionSurvives(original)
    throw error
  } finally {
    // A lost session has released its lock already (session locks die with the session).
    if (locked && alive) await reserved.unsafe(`select pg_advisory_unlock(${ADVISORY_LOCK_KEY})`).catch(() => undefined)
    reserved.release()
  }
}

async function dryRun(sql: Sql, options: MigrateOptions): Promise<MigrateResult> {
  const [state] = await sql<Array<{standby: boolean}>>`select pg_is_in_recovery() as standby`
  if (state.standby) throw standbyError()
  const ledger = await readLedger(sql)
  const p = plan(options.migrations, ledger?.rows ?? [])
  const refused = refusal(p.problems, options)
  if (refused) throw refused
  warnAboutProblems(p, options.onEvent ?? (() => undefined))
  const {toApply} = selectTarget(options.migrations, p.pending, options.target)
  refuseOwnTransactions(toApply)
  return {
    applied: [],
    pending: p.pending.map((m) => m.id),
    upToDate: p.pending.length === 0,
    dryRun: true,
    planned: toApply.map((m) => ({id: m.id, description: m.description, checksum: m.checksum, transaction: m.transaction, sql: m.sql})),
  }
}

function standbyError(): TwDbError {
  return new TwDbError('E_STANDBY', 'the database is a standby (pg_is_in_recovery() is true): migrations can only run on the primary', {
    hint: 'Point tw-db at the primary server.',
  })
}

function warnAboutProblems(p: Plan, emit: (event: MigrateEvent) => void): void {
  const unknown = p.problems.filter((problem) => problem.kind === 'unknown').map((problem) => problem.id)
  if (unknown.length > 0) {
    emit({
      type: 'warning',
      message: `the ledger records migration${unknown.length > 1 ? 's' : ''} this tw-db does not know (${unknown.join(', ')}): the database was migrated by a newer version`,
    })
  }
  const modified = p.problems.filter((problem) => problem.kind === 'modified').map((problem) => problem.id)
  if (modified.length > 0) emit({type: 'warning', message: `ignoring changed checksums of ${modified.join(', ')} (--ignore-checksums)`})
}

async function waitForLock(
  reserved: ReservedSql,
  timeoutSeconds: number,
  emit: (event: MigrateEvent) => void,
  signal?: AbortSignal,
): Promise<void> {
  const holder = await lockHolder(reserved)
  if (timeoutSeconds <= 0) throw lockTimeoutError(holder, timeoutSeconds)
  emit({type: 'lock-wait', holder, timeoutSeconds})
  await reserved`select set_config('lock_timeout', ${String(Math.round(timeoutSeconds * 1000))}, false)`
  try {
    await cancelOnAbort(reserved.unsafe(`select pg_advisory_lock(${ADVISORY_LOCK_KEY})`), signal)
    if (signal?.aborted) throw new Error('interrupted')
  } catch (error) {
    if (isPgError(error) && error.code === SQLSTATE.LOCK_NOT_AVAILABLE) throw lockTimeoutError(await lockHolder(reserved), timeoutSeconds)
    if (signal?.aborted) throw new TwDbError('E_INTERRUPTED', 'interrupted while waiting for the migration lock; nothing was applied')
    throw error
  } finally {
    await reserved`reset lock_timeout`.catch(() => undefined)
  }
}

export async function lockHolder(sql: Sql | ReservedSql): Promise<LockHolder | null> {
  const key = ADVISORY_LOCK_KEY
  const [row] = await sql<Array<{pid: number; application_name: string; since: Date | null}>>`
    select a.pid, a.application_name, a.backend_start as since
    from pg_locks l join pg_stat_activity a on a.pid = l.pid
    where l.locktype = 'advisory' and l.granted and l.objsubid = 1
      and l.classid = ${Number(key >> 32n)}::oid and l.objid = ${Number(key & 0xffffffffn)}::oid
      and l.database = (select oid from pg_database where datname = current_database())
    limit 1`
  return row ? {pid: row.pid, applicationName: row.application_name, since: row.since?.toISOString() ?? null} : null
}

export function describeHolder(holder: LockHolder | null): string {
  if (!holder) return 'another session (it has just released it or is not visible to this user)'
  return `pid ${holder.pid} (application_name "${holder.applicationName}"${holder.since ? `, connected since ${holder.since}` : ''})`
}

function lockTimeoutError(holder: LockHolder | null, timeoutSeconds: number): TwDbError {
  return new TwDbError(
    'E_LOCK_TIMEOUT',
    `another migrate run holds the migration lock (${describeHolder(holder)}); gave up after ${timeoutSeconds} s`,
    {hint: 'Wait for the other run to finish, or raise --lock-timeout / migrations.lock_timeout.'},
  )
}

async function applyEach(
  reserved: ReservedSql,
  migrations: readonly Migration[],
  options: MigrateOptions & {pipelined: boolean},
  emit: (event: MigrateEvent) => void,
): Promise<AppliedMigration[]> {
  const applied: AppliedMigration[] = []
  // The next migration, already sent behind the one the server is running.
  let ahead: InFlight | undefined
  try {
    for (const [index, migration] of migrations.entries()) {
      try {
        // The embedded database runs in this process and holds the event loop while it works: one turn
        // of the loop lets a Ctrl-C that came meanwhile be seen before the next migration starts.
        // A real server's answers come through the loop, so there it would only cost time.
        if (options.signal && !options.pipelined) await nextTurn()
        if (options.signal?.aborted && ahead?.migration !== migration) throw interruptedError(migration)
        const durationMs = migration.transaction
          ? await withLockRetries(migration.id, options, emit, async () => {
              const current = ahead ?? (options.pipelined ? sendInOwnTransaction(reserved, migration, options) : sendInOwnTransactionEmbedded(reserved, migration, options))
              ahead = undefined
              // The server goes on to the next migration without waiting for tw-db to read this one's
              // answer. On a real server only: the embedded one gains nothing, and would run it past a Ctrl-C.
              const next = migrations[index + 1]
              if (options.pipelined && next?.transaction && !options.signal?.aborted) ahead = sendInOwnTransaction(reserved, next, options, migration)
              try {
                return await settle(current)
              } catch (error) {
                // Whatever was sent behind a failure aborts at its guard; the session must be idle again.
                if (ahead) await ahead.outcome
                ahead = undefined
                throw error
              }
            })
          : await applyWithoutTransaction(reserved, migration, options)
        const result = {id: migration.id, description: migration.description, durationMs, checksum: migration.checksum}
        applied.push(result)
        emit({type: 'applied', ...result})
      } catch (error) {
        throw options.signal?.aborted ? interruptedError(migration) : migrationError(migration, error, applied, migrations)
      }
    }
  } finally {
    // Whatever stopped the run, the session must be idle before it is used again.
    if (ahead) await ahead.outcome
  }
  return applied
}

async function applyInOneTransaction(
  reserved: ReservedSql,
  migrations: readonly Migration[],
  options: MigrateOptions,
  emit: (event: MigrateEvent) => void,
): Promise<AppliedMigration[]> {
  if (migrations.length === 0) return []
  const outside = migrations.find((m) => !m.transaction)
  if (outside) {
    throw usageError(
      `--single-transaction cannot include ${path.basename(outside.file)}, which must run outside a transaction (-- transaction: false)`,
      'Apply up to the migration before it with --target, then run the rest without --single-transaction.',
    )
  }
  let failed: Migration | undefined
  try {
    const durations = await withLockRetries('all pending migrations', options, emit, () =>
      applyInSharedTransaction(reserved, migrations, options, (m) => (failed = m)),
    )
    const applied = migrations.map((m, i) => ({id: m.id, description: m.description, durationMs: durations[i], checksum: m.checksum}))
    for (const result of applied) emit({type: 'applied', ...result})
    return applied
  } catch (error) {
    const migration = failed ?? migrations[0]
    throw options.signal?.aborted ? interruptedError(migration) : migrationError(migration, error, [], migrations, true)
  }
}

/**
 * BEGIN, with SET LOCAL lock_timeout so application traffic can never make a
 * migration wait forever; `after` a migration, also its guard: the transaction
 * aborts unless that migration is recorded.
 */
function begin(reserved: ReservedSql, options: MigrateOptions, after?: Migration) {
  // An integer number of ms built here, never input text; the guard quotes its id.
  const guard = after ? `; ${requireRecordedSql(after.id)}` : ''
  return reserved.unsafe(`begin; set local lock_timeout = ${Math.round(options.statementLockTimeout * 1000)}${guard}`)
}

/** A migration's queries on their way to the server, and how each ended. */
interface InFlight {
  readonly migration: Migration
  /** Never rejects. */
  readonly outcome: Promise<[PromiseSettledResult<unknown>, PromiseSettledResult<unknown>, PromiseSettledResult<number>, PromiseSettledResult<unknown>]>
}

/**
 * Sends one migration in its own transaction, in one write, as four queries:
 * BEGIN, the migration's SQL, its ledger row, COMMIT. Round trips are most of
 * a small migration's cost. Whatever fails, the server goes on with the rest
 * in an aborted transaction: the ledger row fails and COMMIT becomes a
 * rollback, which also leaves the session idle. BEGIN is a query of its own
 * because PostgreSQL parses a whole query before running any of it: a
 * migration with a syntax error must not take its BEGIN down with it. So the
 * migration is applied and recorded, or not at all, even if tw-db dies
 * meanwhile (its backend may still commit it, unless the server's check for a
 * dead client stops it first). Sent `after` another migration whose answer
 * has not come yet, it is guarded: it runs only if that one committed.
 */
function sendInOwnTransaction(reserved: ReservedSql, migration: Migration, options: MigrateOptions, after?: Migration): InFlight {
  // postgres.js sends a query when it is first awaited or executed: each is executed here, in order.
  const beginning = begin(reserved, options, after).execute()
  const running = cancelOnAbort(reserved.unsafe(migration.sql).execute(), options.signal, beginning)
  const recording = recordLedgerRow(reserved, migration, options)
  const outcome = Promise.allSettled([beginning, running, recording, reserved`commit`.execute()])
  return {migration, outcome}
}

/**
 * The same on the embedded database, which runs inside tw-db and cannot
 * cancel a statement: sent at once, COMMIT would follow a Ctrl-C that came
 * while the migration ran. It goes only once tw-db has seen no Ctrl-C; after
 * one, the migration and its ledger row are rolled back.
 */
function sendInOwnTransactionEmbedded(reserved: ReservedSql, migration: Migration, options: MigrateOptions): InFlight {
  const beginning = begin(reserved, options).execute()
  const running = reserved.unsafe(migration.sql).execute()
  const recording = recordLedgerRow(reserved, migration, options)
  const committing = Promise.allSettled([beginning, running, recording])
    // One turn of the event loop: a signal that came meanwhile has been handled by then.
    .then(() => nextTurn())
    .then(() => (options.signal?.aborted ? reserved`rollback`.then(() => Promise.reject(new Error('interrupted'))) : reserved`commit`))
  const outcome = Promise.allSettled([beginning, running, recording, committing])
  return {migration, outcome}
}

/**
 * Waits for a migration sent by sendInOwnTransaction. Returns the duration
 * recorded (the server's, from BEGIN to the ledger row); throws the
 * migration's failure.
 */
async function settle({migration, outcome}: InFlight): Promise<number> {
  const [began, ran, recorded, committed] = await outcome
  if (began.status === 'rejected') throw began.reason
  if (ran.status === 'rejected') throw blameFile(ran.reason, 0, migration.sql)
  if (recorded.status === 'rejected') throw recorded.reason
  if (committed.status === 'rejected') throw committed.reason
  return recorded.value
}

/**
 * The migrations of --single-transaction and their ledger rows in one
 * transaction. Each ledger row goes in the same write as the next migration's
 * SQL, the last one with COMMIT. Returns each migration's duration in ms.
 */
async function applyInSharedTransaction(
  reserved: ReservedSql,
  migrations: readonly Migration[],
  options: MigrateOptions,
  onStart: (migration: Migration) => void,
): Promise<number[]> {
  const durations: number[] = []
  try {
    await begin(reserved, options)
    let record: Promise<number> | undefined
    for (const migration of migrations) {
      // The previous ledger row, before this migration's SQL, so a failure is blamed on the right one.
      if (record) durations.push(await record)
      onStart(migration)
      const started = performance.now()
      try {
        await cancelOnAbort(reserved.unsafe(migration.sql), options.signal)
      } catch (error) {
        throw blameFile(error, 0, migration.sql)
      }
      // A Ctrl-C the embedded database could not turn into a cancel: roll back all the same.
      if (options.signal?.aborted) throw new Error('interrupted')
      const durationMs = performance.now() - started
      record = recordLedgerRow(reserved, migration, options, durationMs)
    }
    // Pipelined: if the insert fails, the server turns this COMMIT into a rollback.
    const [last] = await Promise.all([record!, reserved`commit`])
    durations.push(last)
  } catch (error) {
    if (sessionSurvives(error)) await endFailedTransaction(reserved)
    throw error
  }
  return durations
}

/**
 * After a failed query the session is either idle (nothing ran, or COMMIT
 * failed) or in an aborted transaction, which only ROLLBACK ends. Asking
 * first spares a "there is no transaction in progress" warning.
 */
async function endFailedTransaction(reserved: ReservedSql): Promise<void> {
  await reserved`select 1`.catch(() => reserved`rollback`).catch(() => undefined)
}

/**
 * Makes PostgreSQL's error position (1-based, in characters, over the query
 * sent) relative to the migration file, which starts `offset` characters into
 * that query (negative: the query is a statement that many characters into the
 * file). Without a source, the query was tw-db's own (the ledger row): the
 * position is dropped, as it points into no file. Returns the error.
 */
function blameFile(error: unknown, offset = 0, source?: string): unknown {
  if (!isPgError(error) || !error.position) return error
  const position = Number(error.position) - offset
  if (source !== undefined && position >= 1 && position <= characterOffset(source, source.length)) error.position = String(position)
  else delete error.position
  return error
}

async function applyWithoutTransaction(reserved: ReservedSql, migration: Migration, options: MigrateOptions): Promise<number> {
  const started = performance.now()
  for (const statement of splitStatements(migration.sql)) {
    try {
      await cancelOnAbort(reserved.unsafe(statement.sql), options.signal)
    } catch (error) {
      throw blameFile(error, -characterOffset(migration.sql, statement.offset), migration.sql)
    }
    // A Ctrl-C the embedded database could not turn into a cancel stops before the next statement.
    if (options.signal?.aborted) throw new Error('interrupted')
  }
  const durationMs = performance.now() - started
  return recordLedgerRow(reserved, migration, options, durationMs)
}

/**
 * Sends the migration's ledger row at once; without `durationMs` the server
 * records its own. A failure carries no position: it would point into
 * tw-db's INSERT, not into the migration's file.
 */
function recordLedgerRow(reserved: ReservedSql, migration: Migration, options: MigrateOptions, durationMs?: number): Promise<number> {
  return recordMigration(reserved, {id: migration.id, checksum: migration.checksum, durationMs, appliedBy: options.appliedBy}).catch((error) =>
    Promise.reject(blameFile(error)),
  )
}

async function withLockRetries<T>(
  label: string,
  options: MigrateOptions,
  emit: (event: MigrateEvent) => void,
  attempt: () => Promise<T>,
): Promise<T> {
  const delays = options.retryDelaysMs ?? LOCK_RETRY_DELAYS_MS
  for (let retry = 0; ; retry++) {
    try {
      return await attempt()
    } catch (error) {
      const lockTimedOut = isPgError(error) && error.code === SQLSTATE.LOCK_NOT_AVAILABLE
      if (!lockTimedOut || retry >= delays.length || options.signal?.aborted) throw error
      emit({type: 'retry', id: label, attempt: retry + 1, of: delays.length, delayMs: delays[retry], reason: (error as Error).message})
      // A Ctrl-C during the pause ends it: the caller sees the aborted signal and reports the interruption.
      await sleep(delays[retry], undefined, {signal: options.signal})
    }
  }
}

/**
 * Runs a query that an abort signal cancels (PostgreSQL answers 57014 and the
 * transaction rolls back). The embedded database ignores cancel requests, so a
 * query can still complete after the abort: callers check the signal. A query
 * pipelined `behind` another is cancelled only once that one is done: postgres.js
 * loses track of the queries after one cancelled before it started, and hangs.
 */
async function cancelOnAbort<T>(query: PromiseLike<T> & {cancel(): void}, signal?: AbortSignal, behind?: PromiseLike<unknown>): Promise<T> {
  if (!signal) return query
  const cancel = () => {
    void Promise.resolve(behind)
      .catch(() => undefined)
      .then(() => query.cancel())
  }
  signal.addEventListener('abort', cancel, {once: true})
  try {
    return await query
  } finally {
    signal.removeEventListener('abort', cancel)
  }
}

function interruptedError(migration: Migration): TwDbError {
  return new TwDbError('E_INTERRUPTED', `interrupted before or while applying ${migration.id}: its transaction was rolled back and nothing after it ran`, {
    hint: 'Every migration is either fully applied and recorded or not at all: run migrate again to finish.',
  })
}

/** Names the migration, PostgreSQL's message, SQLSTATE and file:line:col. */
function migrationError(
  migration: Migration,
  error: unknown,
  applied: readonly AppliedMigration[],
  attempted: readonly Migration[],
  singleTransaction = false,
): unknown {
  if (error instanceof TwDbError) return error
  const pg = error as PgErrorLike & Error
  const file = path.basename(migration.file)
  const where = locate(migration.sql, pg)
  const location = where ? `${file}:${where.line}:${where.column}` : file
  const sqlstate = pg.code && /^[0-9A-Z]{5}$/.test(pg.code) ? ` (SQLSTATE ${pg.code})` : ''
  const excerpt = where ? `\n  ${where.line} | ${where.lineText}\n  ${' '.repeat(String(where.line).length)} | ${' '.repeat(Math.max(0, where.column - 1))}^` : ''
  const notRun = attempted.slice(attempted.indexOf(migration) + 1).map((m) => m.id)
  const details = {failed: migration.id, sqlstate: pg.code ?? null, applied: applied.map((a) => a.id), notRun}
  if (!sessionSurvives(error)) {
    return new TwDbError('E_CONNECTION_LOST', `lost the connection to the server while applying ${migration.id}: ${pg.message}${sqlstate}`, {
      hint: migration.transaction
        ? 'It was committed with its ledger row or rolled back as a whole: tw-db status shows which. Run migrate again once the server is reachable.'
        : 'It runs outside a transaction: statements before the failure may stay applied. Check, then run migrate again.',
      cause: error,
      details,
    })
  }
  const rolledBack = singleTransaction
    ? 'The whole transaction was rolled back: no migration of this run was applied.'
    : migration.transaction
      ? 'Its transaction was rolled back; later migrations were not attempted.'
      : 'It runs outside a transaction: statements before the failing one stay applied; fix and re-run.'
  const hints = [pg.hint, pg.detail ? `Detail: ${pg.detail}` : undefined, rolledBack].filter(Boolean).join(' ')
  return new TwDbError('E_MIGRATION_FAILED', `migration ${migration.id} failed at ${location}: ${pg.message}${sqlstate}${excerpt}`, {
    exit: EXIT.FAILED,
    hint: hints,
    cause: error,
    details,
  })
}

/** Where in the file PostgreSQL says the error is, also inside DO blocks and function bodies. */
function locate(source: string, error: PgErrorLike): ReturnType<typeof positionToLineColumn> {
  if (error.position) return positionToLineColumn(source, Number(error.position))
  if (error.internal_position && error.internal_query) {
    const at = source.indexOf(error.internal_query)
    if (at !== -1) return positionToLineColumn(source, characterOffset(source, at) + Number(error.internal_position))
  }
  return undefined
}
