import * as Flags from '@oclif/core/flags'

import {BaseCommand} from '../base-command.js'
import {diagnoseConnection, firstFailure, type DiagnosisReport} from '../lib/diagnose.js'
import {EXIT} from '../lib/errors.js'
import {errorLines, renderDiagnosis, renderDiagnosisAttempt, writeErr, writeOut} from '../lib/output.js'

export default class CheckConnection extends BaseCommand {
  static override summary = 'Diagnose the path to the database step by step'
  static override description = `Checks, in order: the resolved config, DNS, TCP, TLS, authentication, that the database exists, the server version (12+), jsonb and timestamptz, uuid-ossp, CREATE on the schema, primary or standby, a transaction pooler in between, the pool size against max_connections, and shows a few settings. A failing step stops the steps that need it. Exits 0 when every required step passes (warnings allowed), 1 otherwise.`
  static override examples = [
    '<%= config.bin %> check-connection',
    '<%= config.bin %> check-connection --workers 4',
    '<%= config.bin %> check-connection --wait 60 --json',
  ]

  static override flags = {
    wait: Flags.integer({
      description: 'retry for up to this many seconds until every required step passes (for health checks and CI)',
      min: 0,
      helpValue: 'SECONDS',
    }),
    workers: Flags.integer({description: 'worker processes that share the server, for the pool-sizing check', min: 1, default: 1}),
  }

  async run(): Promise<DiagnosisReport> {
    const {flags} = await this.parse(CheckConnection)
    const config = await this.resolveConfig(flags)
    const report = await diagnoseConnection(config, {
      workers: flags.workers,
      waitSeconds: flags.wait,
      onAttempt: (attempt) => writeErr(renderDiagnosisAttempt(attempt)),
      onNotice: (notice) => writeErr(`${notice.severity}: ${notice.message}`),
    })
    if (!this.jsonEnabled()) writeOut(renderDiagnosis(report))
    const failed = firstFailure(report)
    if (!report.ok) {
      process.exitCode = EXIT.FAILED
      if (failed && !this.jsonEnabled()) writeErr(errorLines(`check-connection failed at ${failed.title}: ${failed.detail}`, failed.hint ?? undefined))
    }
    return report
  }
}
