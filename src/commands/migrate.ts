import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../base-command.js'
import {migrate, type MigrateResult} from '../lib/migrator.js'
import {renderDryRun, renderMigrateEvent, renderMigrateSummary, writeErr, writeOut} from '../lib/output.js'
import {loadRegistry} from '../lib/registry.js'
import {APPLIED_BY} from '../lib/version.js'

export default class Migrate extends BaseCommand {
  static override summary = 'Apply pending migrations in registry order'
  static override description = `Each migration and its ledger row (_migrations_applied) commit in one transaction, under an advisory lock so only one run works at a time. Refuses to run when an applied migration changed or a pending one sorts before an applied one.`
  static override examples = [
    '<%= config.bin %> migrate',
    '<%= config.bin %> migrate --dry-run',
    '<%= config.bin %> migrate --target tenantstate --database-url postgres://user:pass@db:5432/antiraid',
  ]

  static override flags = {
    'migrations-dir': Flags.directory({description: 'apply this registry (NNNN_<id>.sql files) instead of the bundled one'}),
    'dry-run': Flags.boolean({description: 'print the plan and the SQL of each pending migration; change nothing'}),
    target: Flags.string({description: 'stop after the migration with this id'}),
    'single-transaction': Flags.boolean({description: 'apply all pending migrations in one transaction: all or nothing'}),
    'ignore-checksums': Flags.boolean({description: 'apply even if an applied migration file changed since'}),
    'lock-timeout': Flags.integer({description: 'seconds to wait for another run holding the migration lock', min: 0}),
  }

  async run(): Promise<MigrateResult> {
    const {flags} = await this.parse(Migrate)
    const config = await this.resolveConfig(flags, {lockTimeout: flags['lock-timeout']})
    const migrations = await loadRegistry(flags['migrations-dir'])
    // The migrator works on one reserved session: the advisory lock and every transaction share it.
    const sql = await this.connect(config, {max: 1})
    const json = this.jsonEnabled()
    // Ctrl-C cancels the running statement so its transaction rolls back and the lock is released;
    // a second Ctrl-C falls through to Node's default and ends the process at once.
    const controller = new AbortController()
    const interrupt = () => {
      writeErr('Interrupted: cancelling the running migration…')
      controller.abort()
    }
    process.once('SIGINT', interrupt).once('SIGTERM', interrupt)
    const started = performance.now()
    const result = await migrate(sql, {
      signal: controller.signal,
      migrations,
      target: flags.target,
      dryRun: flags['dry-run'],
      singleTransaction: flags['single-transaction'],
      ignoreChecksums: flags['ignore-checksums'],
      lockTimeout: config.migrations.lockTimeout,
      statementLockTimeout: config.migrations.statementLockTimeout,
      appliedBy: APPLIED_BY,
      onEvent: (event) => renderMigrateEvent(event, {json}),
    }).finally(() => process.off('SIGINT', interrupt).off('SIGTERM', interrupt))
    if (!json) {
      writeOut(result.dryRun ? renderDryRun(result.planned ?? [], result.pending) : renderMigrateSummary(result, performance.now() - started))
    }
    return result
  }
}
