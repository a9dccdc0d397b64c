import {Command} from '@oclif/core/command'
import * as Errors from '@oclif/core/errors'
import * as Flags from '@oclif/core/flags'

import {loadConfig, type Config, type ConfigOverrides} from './lib/config.js'
import {closePool, openPool, type Sql} from './lib/connection.js'
import {EXIT, TwDbError, fromPgError, isPgError} from './lib/errors.js'
import {errorLines, warn, writeErr} from './lib/output.js'
import {redact} from './lib/redact.js'

/**
 * What every tw-db command shares: the connection flags, config loading with
 * its warnings, one pool closed at the end, and errors rendered as one line
 * plus a hint with the exit code of SPEC.md.
 */
export abstract class BaseCommand extends Command {
  static override enableJsonFlag = true

  static override baseFlags = {
    'database-url': Flags.string({
      description: 'PostgreSQL URL (overrides DATABASE_URL and the config file)',
      helpGroup: 'CONNECTION',
    }),
    config: Flags.string({description: 'config file to read instead of searching for config.yaml', helpGroup: 'CONNECTION'}),
    'max-connections': Flags.integer({description: 'pool size (also MAX_DB_CONNECTIONS)', min: 1, helpGroup: 'CONNECTION'}),
    verbose: Flags.boolean({description: 'show stack traces on errors', helpGroup: 'GLOBAL'}),
  }

  private pools: Sql[] = []
  private verbose = false
  private connectionDisplay?: string

  protected async resolveConfig(
    flags: {'database-url'?: string; config?: string; 'max-connections'?: number; verbose?: boolean},
    overrides: Pick<ConfigOverrides, 'lockTimeout'> = {},
  ): Promise<Config> {
    this.verbose = Boolean(flags.verbose)
    const config = await loadConfig({
      ...overrides,
      databaseUrl: flags['database-url'],
      configPath: flags.config,
      maxConnections: flags['max-connections'],
    })
    for (const warning of config.warnings) warn(warning)
    for (const notice of config.notices) writeErr(notice)
    this.connectionDisplay = config.connection.display
    return config
  }

  protected async connect(config: Config, options: {max?: number} = {}): Promise<Sql> {
    const sql = await openPool(config.connection, {
      ...options,
      onNotice: (notice) => writeErr(`${notice.severity}: ${notice.message}`),
    })
    this.pools.push(sql)
    return sql
  }

  override async catch(error: Error & {exitCode?: number}): Promise<void> {
    if (error instanceof Errors.ExitError) throw error
    const failure = this.toTwDbError(error)
    process.exitCode = failure.exit
    if (this.jsonEnabled()) {
      this.logJson({error: {code: failure.code, message: failure.message, hint: failure.hint ?? null, exit: failure.exit, ...failure.details}})
    } else {
      writeErr(errorLines(failure.message, failure.hint))
    }
    if (this.verbose || process.env.DEBUG) writeErr(redact(String(error.stack ?? error)))
  }

  override async finally(): Promise<void> {
    await Promise.all(this.pools.map((sql) => closePool(sql)))
  }

  private toTwDbError(error: Error): TwDbError {
    if (error instanceof TwDbError) return error
    const mapped = this.connectionDisplay ? fromPgError(error, this.connectionDisplay) : error
    if (mapped instanceof TwDbError) return mapped
    if (error instanceof Errors.CLIError) {
      // oclif's own parse errors: unknown flag, missing value, bad option.
      // oclif puts the reason on the following lines ("Parsing --workers\n\tExpected an integer…").
      const message = error.message
        .split('\n')
        .map((line) => line.trim())
        .filter((line) => line && !line.startsWith('See more help'))
        .join(': ')
      return new TwDbError('E_USAGE', message, {exit: EXIT.USAGE, hint: `See tw-db ${this.id ?? ''} --help.`.replace('  ', ' ')})
    }
    if (isPgError(error)) {
      return new TwDbError('E_DATABASE', `PostgreSQL refused a query: ${error.message} (SQLSTATE ${error.code})`, {
        hint: error.hint ?? 'Check that this user may read the database (status) or change its schema (migrate).',
      })
    }
    return new TwDbError('E_INTERNAL', error.message || String(error), {
      hint: 'This looks like a bug in tw-db; run again with --verbose and report the output.',
    })
  }
}
