import {createInterface} from 'node:readline/promises'

import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../base-command.js'
import {backup, type BackupFormat, type BackupResult} from '../lib/backup.js'
import {EXIT, TwDbError} from '../lib/errors.js'
import {migrate, withMigrationLock, type MigrateResult} from '../lib/migrator.js'
import {formatBytes, renderMigrateEvent, renderMigrateSummary, warn, writeErr, writeOut} from '../lib/output.js'
import {loadRegistry} from '../lib/registry.js'
import {resetDatabase} from '../lib/reset.js'
import {APPLIED_BY} from '../lib/version.js'

/** The backup format a file name asks for: foo.dump → custom, foo.tar → tar, anything else plain. */
function formatFor(file: string): BackupFormat {
  if (/\.(dump|custom|pgdump)$/i.test(file)) return 'custom'
  if (/\.tar$/i.test(file)) return 'tar'
  return 'plain'
}

export default class Reset extends BaseCommand {
  static override summary = 'Drop everything in the database and start over'
  static override description = `Drops and recreates the public schema (keeping its owner, grants and default privileges) and drops every other non-system schema, ledger included, in one transaction. On a terminal you confirm by typing the database name; elsewhere --force is required.`
  static override examples = [
    '<%= config.bin %> reset',
    '<%= config.bin %> reset --force --backup before-reset.dump --migrate',
  ]

  static override flags = {
    force: Flags.boolean({description: 'do not ask for confirmation (required without a terminal)'}),
    backup: Flags.string({description: 'take a backup to FILE first (.dump = custom, .tar = tar, else plain SQL); no reset if it fails'}),
    migrate: Flags.boolean({description: 'apply all migrations afterwards'}),
    'migrations-dir': Flags.directory({description: 'with --migrate: apply this registry instead of the bundled one'}),
    'lock-timeout': Flags.integer({description: 'seconds to wait for a migrate run holding the migration lock', min: 0}),
  }

  async run(): Promise<{database: string; backup: BackupResult | null; droppedSchemas: string[]; migrate: MigrateResult | null}> {
    const {flags} = await this.parse(Reset)
    const config = await this.resolveConfig(flags, {lockTimeout: flags['lock-timeout']})
    const {database, display} = config.connection
    if (!flags.force) await this.confirm(database, display)

    const sql = await this.connect(config, {max: 1})
    let backupResult: BackupResult | null = null
    if (flags.backup) {
      try {
        backupResult = await backup(sql, config.connection, {format: formatFor(flags.backup), output: flags.backup, pgBinDir: config.tools.pgBinDir, onNotice: writeErr})
      } catch (error) {
        const reason = error instanceof Error ? error.message : String(error)
        throw new TwDbError('E_REFUSED', `reset refused: the backup to ${flags.backup} failed (${reason}); nothing was dropped`, {
          hint: error instanceof TwDbError ? error.hint : undefined,
        })
      }
      writeErr(`Backed up ${database} to ${flags.backup} (${formatBytes(backupResult.bytes ?? 0)}, last migration ${backupResult.lastMigration ?? 'none'})`)
    }

    const json = this.jsonEnabled()
    const onEvent = (event: Parameters<typeof renderMigrateEvent>[0]) => renderMigrateEvent(event, {json})
    const {droppedSchemas} = await withMigrationLock(sql, {lockTimeout: config.migrations.lockTimeout, onEvent}, resetDatabase)
    writeErr(`Reset ${display}: dropped ${droppedSchemas.join(', ') || 'nothing'}; public recreated`)

    let migrated: MigrateResult | null = null
    if (flags.migrate) {
      const started = performance.now()
      migrated = await migrate(sql, {
        migrations: await loadRegistry(flags['migrations-dir']),
        lockTimeout: config.migrations.lockTimeout,
        statementLockTimeout: config.migrations.statementLockTimeout,
        appliedBy: APPLIED_BY,
        onEvent,
      })
      if (!json) writeOut(renderMigrateSummary(migrated, performance.now() - started))
    }
    return {database, backup: backupResult, droppedSchemas, migrate: migrated}
  }

  /** Typed confirmation of the database name on a terminal; anything else needs --force. */
  private async confirm(database: string, display: string): Promise<void> {
    if (!process.stdin.isTTY) {
      throw new TwDbError('E_REFUSED', 'reset needs --force when not run from a terminal; nothing was dropped', {
        exit: EXIT.USAGE,
        hint: `Run it interactively, or add --force if you really mean to empty ${display}.`,
      })
    }
    warn(`this drops every table and schema in ${display}.`)
    const prompt = createInterface({input: process.stdin, output: process.stderr})
    try {
      const answer = await prompt.question(`Type the database name (${database}) to confirm: `)
      if (answer.trim() !== database) {
        throw new TwDbError('E_REFUSED', `confirmation "${answer.trim()}" does not match the database name; nothing was dropped`, {exit: EXIT.USAGE})
      }
    } finally {
      prompt.close()
    }
  }
}
