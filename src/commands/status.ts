import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../base-command.js'
import {EXIT} from '../lib/errors.js'
import {isUpToDate, readStatus, type StatusReport} from '../lib/migrator.js'
import {renderStatus, writeErr, writeOut} from '../lib/output.js'
import {loadRegistry} from '../lib/registry.js'

export default class Status extends BaseCommand {
  static override summary = 'Show every migration and whether it is applied'
  static override description = `Read-only: never creates or alters anything, so it works on a read replica and on a database that has no ledger yet (everything is pending there). States: applied, pending, modified (the file changed since it was applied), unknown (recorded by a newer tool).`
  static override examples = ['<%= config.bin %> status', '<%= config.bin %> status --check --json']

  static override flags = {
    'migrations-dir': Flags.directory({description: 'compare against this registry instead of the bundled one'}),
    check: Flags.boolean({description: 'exit 3 unless every migration is applied and none is modified or unknown'}),
  }

  async run(): Promise<StatusReport> {
    const {flags} = await this.parse(Status)
    const config = await this.resolveConfig(flags)
    const sql = await this.connect(config, {max: 1})
    const report = await readStatus(sql, () => loadRegistry(flags['migrations-dir']))
    if (!this.jsonEnabled()) writeOut(await renderStatus(report))
    if (flags.check && !isUpToDate(report)) {
      const {pending, modified, unknown} = report.summary
      writeErr(`Not up to date: ${pending} pending, ${modified} modified, ${unknown} unknown.`)
      process.exitCode = EXIT.NOT_UP_TO_DATE
    }
    return report
  }
}
