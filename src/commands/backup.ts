import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../base-command.js'
import {BACKUP_FORMATS, backup, type BackupResult} from '../lib/backup.js'
import {usageError} from '../lib/errors.js'
import {clearProgressLine, formatBytes, formatDuration, progressLine, writeErr} from '../lib/output.js'

export default class Backup extends BaseCommand {
  static override summary = 'Stream a logical backup of the database (pg_dump)'
  static override description = `Plain SQL to stdout by default (refused when stdout is a terminal). With --output the backup is written to a temporary file beside FILE (mode 0600), fsynced and renamed only when pg_dump succeeded: on any failure nothing is left at FILE. Uses the newest pg_dump whose major version is at least the server's.`
  static override examples = [
    '<%= config.bin %> backup > dump.sql',
    '<%= config.bin %> backup -F custom -o antiraid.dump',
    '<%= config.bin %> backup --data-only -t tenant_kv -t tenant_state | gzip > kv.sql.gz',
  ]

  static override flags = {
    output: Flags.string({char: 'o', description: 'write to FILE (a directory for -F directory) instead of stdout; - is stdout'}),
    format: Flags.option({char: 'F', options: BACKUP_FORMATS, default: 'plain' as const, description: 'pg_dump output format'})(),
    'schema-only': Flags.boolean({description: 'only the schema, no data', exclusive: ['data-only']}),
    'data-only': Flags.boolean({description: 'only the data, no schema'}),
    table: Flags.string({char: 't', multiple: true, description: 'dump only this table (repeatable; pg_dump patterns allowed)'}),
    compress: Flags.integer({char: 'Z', min: 0, max: 9, description: 'compression level (0-9); gzip for plain and custom'}),
  }

  async run(): Promise<BackupResult> {
    const {flags} = await this.parse(Backup)
    // -o - is stdout, as `restore -` is stdin.
    const output = flags.output === '-' ? undefined : flags.output
    if (!output && process.stdout.isTTY) {
      throw usageError('refusing to write a backup to a terminal', 'Redirect it (tw-db backup > dump.sql) or pass -o FILE.')
    }
    if (!output && this.jsonEnabled()) {
      throw usageError('--json needs --output: without it the backup itself goes to stdout')
    }
    const config = await this.resolveConfig(flags)
    const sql = await this.connect(config, {max: 1})
    const controller = new AbortController()
    const abort = () => controller.abort()
    process.once('SIGINT', abort).once('SIGTERM', abort)
    const started = performance.now()
    try {
      const result = await backup(sql, config.connection, {
        format: flags.format,
        output,
        schemaOnly: flags['schema-only'],
        dataOnly: flags['data-only'],
        tables: flags.table,
        compress: flags.compress,
        pgBinDir: config.tools.pgBinDir,
        signal: controller.signal,
        onNotice: writeErr,
        onProgress: process.stderr.isTTY
          ? (bytes) => progressLine(`Backing up: ${formatBytes(bytes)} written, ${formatDuration(performance.now() - started)}`)
          : undefined,
      })
      if (process.stderr.isTTY) clearProgressLine()
      writeErr(
        `Backup complete: ${result.format} format, ${result.bytes === null ? 'streamed to stdout' : formatBytes(result.bytes)}${result.output ? ` in ${result.output}` : ''}, ${formatDuration(result.durationMs)}; ` +
          `last applied migration: ${result.lastMigration ?? 'none'} (pg_dump ${result.pgDump.version}, server ${result.serverVersion})`,
      )
      return result
    } finally {
      process.off('SIGINT', abort).off('SIGTERM', abort)
    }
  }
}
