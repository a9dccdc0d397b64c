import {chalkStderr, default as chalk} from 'chalk'

import type {MigrateEvent, MigrateResult, PlannedMigration, StatusReport, StatusRow} from './migrator.js'
import {describeHolder} from './migrator.js'
import {redact} from './redact.js'

/**
 * Everything tw-db shows a person is built here. Data goes to stdout;
 * progress, notices, warnings and errors to stderr. Colour follows the
 * stream it is written to (chalk honours NO_COLOR and FORCE_COLOR).
 */

export function writeOut(text: string): void {
  process.stdout.write(redact(text) + '\n')
}

export function writeErr(text: string): void {
  process.stderr.write(redact(text) + '\n')
}

/**
 * With DEBUG set, oclif's debug lines (the `debug` package, written straight to
 * stderr) show the command line, a --database-url password included: from then
 * on, whatever text goes to stderr passes through redact() too.
 */
export function redactDebugOutput(): void {
  const write = process.stderr.write.bind(process.stderr) as (chunk: unknown, ...rest: unknown[]) => boolean
  process.stderr.write = ((chunk: unknown, ...rest: unknown[]) => write(typeof chunk === 'string' ? redact(chunk) : chunk, ...rest)) as typeof process.stderr.write
}

export function warn(message: string): void {
  writeErr(`${chalkStderr.yellow('Warning:')} ${message}`)
}

export function errorLines(message: string, hint?: string): string {
  const lines = [`${chalkStderr.red('Error:')} ${message}`]
  if (hint) lines.push(`${chalkStderr.dim('Hint:')} ${hint}`)
  return lines.join('\n')
}

export function formatDuration(ms: number | null): string {
  if (ms === null) return '-'
  if (ms < 1000) return `${Math.round(ms)} ms`
  return `${(ms / 1000).toFixed(2)} s`
}

function formatTimestamp(iso: string | null): string {
  return iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '-'
}

const STATE_COLOURS: Record<StatusRow['state'], (text: string) => string> = {
  applied: chalk.green,
  pending: chalk.yellow,
  modified: chalk.red,
  unknown: chalk.magenta,
}

export async function renderStatus(report: StatusReport): Promise<string> {
  const {default: Table} = await import('cli-table3')
  const table = new Table({
    head: ['#', 'ID', 'Description', 'State', 'Applied at', 'Duration', 'Checksum'],
    style: {head: chalk.level > 0 ? ['bold'] : [], border: []},
    // No rule between rows: one line per migration reads better and greps well.
    chars: {mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': ''},
  })
  report.migrations.forEach((row, index) => {
    // The ledger's checksum for what was applied, the file's for what is pending.
    const shown = row.state === 'pending' ? row.checksum : row.recordedChecksum
    table.push([
      String(index + 1),
      row.id,
      row.description ?? '-',
      STATE_COLOURS[row.state](row.state),
      formatTimestamp(row.appliedAt),
      formatDuration(row.durationMs),
      shown ? shown.slice(0, 12) : '-',
    ])
  })
  const {applied, pending, modified, unknown} = report.summary
  const summary = [`${applied} applied`, `${pending} pending`]
  if (modified) summary.push(`${modified} modified`)
  if (unknown) summary.push(`${unknown} unknown`)
  return `${table.toString()}\n${summary.join(', ')}`
}

export function renderMigrateEvent(event: MigrateEvent, options: {json: boolean}): void {
  switch (event.type) {
    case 'applied':
      if (!options.json) writeOut(`${chalk.green('✔')} ${event.id} ${chalk.dim(`(${formatDuration(event.durationMs)})`)}`)
      break
    case 'lock-wait':
      writeErr(`Waiting up to ${event.timeoutSeconds} s for the migration lock held by ${describeHolder(event.holder)}…`)
      break
    case 'retry':
      writeErr(
        `${chalkStderr.yellow('Retry')} ${event.attempt}/${event.of} of ${event.id} in ${formatDuration(event.delayMs)}: ${event.reason}`,
      )
      break
    case 'warning':
      warn(event.message)
      break
  }
}

export function renderMigrateSummary(result: MigrateResult, elapsedMs: number): string {
  const n = result.applied.length
  let line = n > 0
    ? `Applied ${n} migration${n === 1 ? '' : 's'} in ${(elapsedMs / 1000).toFixed(2)} s`
    : result.pending.length > 0 ? 'Nothing applied' : 'Database is up to date'
  if (result.pending.length > 0) line += `; still pending after --target: ${result.pending.join(', ')}`
  return line
}

export function renderDryRun(planned: readonly PlannedMigration[], pendingAfter: readonly string[]): string {
  if (planned.length === 0) return 'Dry run: nothing to apply, the database is up to date.'
  const parts = [`Dry run: would apply ${planned.length} migration${planned.length === 1 ? '' : 's'} (nothing was changed):`]
  for (const m of planned) {
    const mode = m.transaction ? '' : ' [outside a transaction]'
    parts.push('', chalk.bold(`-- ${m.id}: ${m.description}${mode} (checksum ${m.checksum.slice(0, 12)})`), m.sql.trimEnd())
  }
  const skipped = pendingAfter.filter((id) => !planned.some((m) => m.id === id))
  if (skipped.length > 0) parts.push('', `Left pending after --target: ${skipped.join(', ')}`)
  return parts.join('\n')
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB']
  let value = bytes
  let unit = 0
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000
    unit++
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`
}

/** A progress line that rewrites itself; only ever shown when stderr is a terminal. */
export function progressLine(text: string): void {
  process.stderr.write(`\r\u001B[2K${text}`)
}

export function clearProgressLine(): void {
  process.stderr.write('\r\u001B[2K')
}

// ---------------------------------------------------------------- check-connection

type DiagnosisReport = import('./diagnose.js').DiagnosisReport
type DiagnosisStep = import('./diagnose.js').StepResult
type FailedAttempt = import('./diagnose.js').FailedAttempt

const STEP_MARKS: Record<DiagnosisStep['status'], string> = {
  pass: chalk.green('✔'),
  warn: chalk.yellow('!'),
  fail: chalk.red('✘'),
  skipped: chalk.dim('-'),
  'n/a': chalk.dim('·'),
}

/** One line per step (mark, title, time, detail), a hint line under failures and warnings, then a verdict. */
export function renderDiagnosis(report: DiagnosisReport): string {
  const titleWidth = Math.max(...report.steps.map((step) => step.title.length))
  const lines: string[] = []
  for (const step of report.steps) {
    const time = step.ms === null ? '' : formatDuration(step.ms)
    const detail = step.status === 'skipped' || step.status === 'n/a' ? chalk.dim(step.detail) : step.detail
    lines.push(`${STEP_MARKS[step.status]} ${step.title.padEnd(titleWidth)}  ${time.padStart(7)}  ${detail}`)
    if (step.hint) lines.push(`${' '.repeat(titleWidth + 13)}${chalk.dim('hint:')} ${step.hint}`)
  }
  const failed = report.steps.filter((step) => step.status === 'fail')
  const warned = report.steps.filter((step) => step.status === 'warn')
  const notRun = report.steps.filter((step) => step.status === 'skipped').length
  const warnings = warned.length > 0 ? `${warned.length} warning${warned.length === 1 ? '' : 's'} (${warned.map((s) => s.title).join(', ')})` : ''
  let verdict: string
  if (failed.length > 0) {
    verdict = chalk.red(`Failed: ${failed.map((s) => s.title).join(', ')}`)
    if (notRun > 0) verdict += `; ${notRun} step${notRun === 1 ? '' : 's'} not run`
    if (warnings) verdict += `; ${warnings}`
  } else {
    verdict = chalk.green('All required checks passed') + (warnings ? `, ${warnings}` : '')
  }
  lines.push('', `${verdict}.`)
  return lines.join('\n')
}

/** --wait: one stderr line per failed attempt. */
export function renderDiagnosisAttempt(attempt: FailedAttempt): string {
  return `Attempt ${attempt.attempt} failed at ${attempt.step.title}: ${attempt.step.detail}; retrying in ${formatDuration(attempt.retryInMs)} (${Math.ceil(attempt.remainingMs / 1000)} s left)`
}
