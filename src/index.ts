/**
 * The programmatic API: `import {migrate, status} from 'tw-db'`.
 * Same behaviour as the CLI, without printing: results are returned, problems
 * are thrown as TwDbError (with `code`, `exit` and `hint`).
 */
import {loadConfig, type ConfigOverrides} from './lib/config.js'
import {closePool, openPool, withConnectionErrors, type Notice} from './lib/connection.js'
import * as migrator from './lib/migrator.js'
import {loadRegistry} from './lib/registry.js'
import {APPLIED_BY} from './lib/version.js'

export {TwDbError, EXIT} from './lib/errors.js'
export type {ErrorCode} from './lib/errors.js'
export type {MigrateEvent, MigrateResult, StatusReport, StatusRow, MigrationState} from './lib/migrator.js'
export {ADVISORY_LOCK_KEY} from './lib/migrator.js'
export {LEDGER_TABLE} from './lib/ledger.js'

export interface ConnectOptions extends ConfigOverrides {
  /** A registry directory in the bundled format; defaults to tw-db's own migrations. */
  migrationsDir?: string
  /** Environment used for resolution (DATABASE_URL, PG*, ${VAR}); defaults to process.env. */
  env?: Record<string, string | undefined>
  /** Where to search for a config file; defaults to process.cwd(). */
  cwd?: string
  onNotice?: (notice: Notice) => void
}

export interface MigrateOptions extends ConnectOptions {
  target?: string
  dryRun?: boolean
  singleTransaction?: boolean
  ignoreChecksums?: boolean
  onEvent?: (event: migrator.MigrateEvent) => void
}

export async function migrate(options: MigrateOptions = {}): Promise<migrator.MigrateResult> {
  const config = await loadConfig(options, options.env, options.cwd)
  const migrations = await loadRegistry(options.migrationsDir)
  const sql = await openPool(config.connection, {max: 1, onNotice: options.onNotice})
  try {
    return await withConnectionErrors(config.connection, () =>
      migrator.migrate(sql, {
        migrations,
        target: options.target,
        dryRun: options.dryRun,
        singleTransaction: options.singleTransaction,
        ignoreChecksums: options.ignoreChecksums,
        lockTimeout: config.migrations.lockTimeout,
        statementLockTimeout: config.migrations.statementLockTimeout,
        appliedBy: APPLIED_BY,
        onEvent: options.onEvent,
      }),
    )
  } finally {
    await closePool(sql)
  }
}

export async function status(options: ConnectOptions = {}): Promise<migrator.StatusReport & {upToDate: boolean}> {
  const config = await loadConfig(options, options.env, options.cwd)
  const sql = await openPool(config.connection, {max: 1, onNotice: options.onNotice})
  try {
    const report = await withConnectionErrors(config.connection, () => migrator.readStatus(sql, () => loadRegistry(options.migrationsDir)))
    return {...report, upToDate: migrator.isUpToDate(report)}
  } finally {
    await closePool(sql)
  }
}
