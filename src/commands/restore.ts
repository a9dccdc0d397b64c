import * as Args from '@oclif/core/args'
import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../base-command.js'
import {usageError} from '../lib/errors.js'
import {readStatus, type StatusReport} from '../lib/migrator.js'
import {formatDuration, renderStatus, writeErr, writeOut} from '../lib/output.js'
import {loadRegistry} from '../lib/registry.js'
import {restore, type RestoreResult} from '../lib/restore.js'

export default class Restore extends BaseCommand {
  static override summary = 'Restore a backup made by tw-db backup or pg_dump'
  static override description = `Detects the format (custom, directory, tar, gzip-compressed plain, plain) and restores it in one transaction: on failure the database is as it was. The target must be empty unless --clean, which empties it in the same transaction. A plain dump without pg_dump's closing line is refused as truncated unless --force. Prints the restored database's migration status.`
  static override examples = ['<%= config.bin %> restore dump.sql', '<%= config.bin %> restore < dump.sql', '<%= config.bin %> restore antiraid.dump --clean']

  static override args = {
    file: Args.string({description: 'backup file or directory; - or nothing reads stdin', ignoreStdin: true}),
  }

  static override flags = {
    clean: Flags.boolean({description: 'drop everything in the target first (same transaction as the restore)'}),
    force: Flags.boolean({description: 'restore a plain dump even though it looks truncated'}),
  }

  async run(): Promise<{restore: RestoreResult; status: StatusReport}> {
    const {args, flags} = await this.parse(Restore)
    if ((args.file === undefined || args.file === '-') && process.stdin.isTTY) {
      throw usageError('nothing to restore: give a FILE, or pipe a dump into stdin (tw-db restore < dump.sql)')
    }
    const config = await this.resolveConfig(flags)
    const sql = await this.connect(config, {max: 1})
    const controller = new AbortController()
    const abort = () => controller.abort()
    process.once('SIGINT', abort).once('SIGTERM', abort)
    const result = await restore(sql, config.connection, {
      source: args.file,
      clean: flags.clean,
      force: flags.force,
      pgBinDir: config.tools.pgBinDir,
      signal: controller.signal,
    }).finally(() => process.off('SIGINT', abort).off('SIGTERM', abort))
    writeErr(`Restored ${result.format} backup from ${result.source} into ${config.connection.display} in ${formatDuration(result.durationMs)}`)
    const status = await readStatus(sql, () => loadRegistry())
    if (!this.jsonEnabled()) writeOut(await renderStatus(status))
    return {restore: result, status}
  }
}
