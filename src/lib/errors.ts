import {redact} from './redact.js'

/** Exit codes of SPEC.md section 3; every command uses these and no others. */
export const EXIT = {
  OK: 0,
  FAILED: 1,
  USAGE: 2,
  NOT_UP_TO_DATE: 3,
} as const

export type ExitCode = (typeof EXIT)[keyof typeof EXIT]

export type ErrorCode =
  | 'E_AUTH'
  | 'E_BACKUP_FAILED'
  | 'E_CHECKSUM'
  | 'E_CONFIG'
  | 'E_CONNECTION_LOST'
  | 'E_DATABASE'
  | 'E_DATABASE_MISSING'
  | 'E_DNS'
  | 'E_EMBEDDED'
  | 'E_EMBEDDED_BUSY'
  | 'E_INTERNAL'
  | 'E_INTERRUPTED'
  | 'E_LOCK_TIMEOUT'
  | 'E_MIGRATION_FAILED'
  | 'E_NO_DATABASE'
  | 'E_NOT_EMPTY'
  | 'E_OUT_OF_ORDER'
  | 'E_PG_TOOL'
  | 'E_REFUSED'
  | 'E_REGISTRY'
  | 'E_RESTORE_FAILED'
  | 'E_SSL'
  | 'E_STANDBY'
  | 'E_TIMEOUT'
  | 'E_TOO_MANY_CONNECTIONS'
  | 'E_TRUNCATED'
  | 'E_UNREACHABLE'
  | 'E_USAGE'

/**
 * The one error type tw-db raises on purpose: a stable code for tests and
 * scripts, the exit code of SPEC.md, and a hint telling the user what to do.
 * The message and hint are redacted on construction, so no path can leak a
 * password through an error.
 */
export class TwDbError extends Error {
  readonly code: ErrorCode
  readonly exit: ExitCode
  readonly hint?: string
  /** Extra facts for the --json error document (e.g. which migrations ran). */
  readonly details?: Record<string, unknown>

  constructor(
    code: ErrorCode,
    message: string,
    options: {exit?: ExitCode; hint?: string; cause?: unknown; details?: Record<string, unknown>} = {},
  ) {
    super(redact(message), options.cause === undefined ? undefined : {cause: options.cause})
    this.name = 'TwDbError'
    this.code = code
    this.exit = options.exit ?? EXIT.FAILED
    this.hint = options.hint === undefined ? undefined : redact(options.hint)
    this.details = options.details
  }
}

export function configError(message: string, hint?: string): TwDbError {
  return new TwDbError('E_CONFIG', message, {exit: EXIT.USAGE, hint})
}

export function usageError(message: string, hint?: string): TwDbError {
  return new TwDbError('E_USAGE', message, {exit: EXIT.USAGE, hint})
}

/** The fields of a postgres.js PostgresError (or a Node socket error) that we read. */
export interface PgErrorLike {
  message?: string
  code?: string
  errno?: string | number
  severity?: string
  detail?: string
  hint?: string
  position?: string
  internal_position?: string
  internal_query?: string
  where?: string
  hostname?: string
  syscall?: string
}

export function isPgError(error: unknown): error is PgErrorLike & Error {
  return error instanceof Error && (error as {name?: string}).name === 'PostgresError'
}

/**
 * Whether the session an error came from can still take commands: a FATAL or
 * PANIC from the server, or any socket-level error, ends it. Sending anything
 * more (a ROLLBACK, an unlock) on a dead session only adds a second failure.
 */
export function sessionSurvives(error: unknown): boolean {
  return isPgError(error) && error.severity !== 'FATAL' && error.severity !== 'PANIC'
}

/** SQLSTATEs the rest of the code branches on. */
export const SQLSTATE = {
  LOCK_NOT_AVAILABLE: '55P03',
  UNDEFINED_TABLE: '42P01',
  INVALID_PASSWORD: '28P01',
  INVALID_AUTHORIZATION: '28000',
  INVALID_CATALOG_NAME: '3D000',
  TOO_MANY_CONNECTIONS: '53300',
  ADMIN_SHUTDOWN: '57P01',
  CANNOT_CONNECT_NOW: '57P03',
} as const

/**
 * Turns a failure to reach or talk to PostgreSQL into one clear line with a
 * hint. `target` is the redacted description of where we tried to connect.
 * Errors it does not recognise are returned unchanged.
 */
export function fromPgError(error: unknown, target: string): unknown {
  if (error instanceof TwDbError || !(error instanceof Error)) return error
  const e = error as PgErrorLike & Error
  const code = String(e.code ?? '')
  const detail = e.message ?? String(error)

  // A TLS failure surfaces as a socket error (ECONNRESET…): name the real cause.
  if (!isPgError(error) && /\b(ssl|tls|certificate)\b/i.test(detail)) {
    return new TwDbError('E_SSL', `TLS negotiation with ${target} failed: ${detail}`, {
      cause: error,
      hint: 'Check database.ssl (or sslmode in the URL) and database.ssl_root_cert: a server without TLS needs ssl: prefer or disable; verify-full needs the CA that signed the server certificate.',
    })
  }

  switch (code) {
    case 'ECONNREFUSED':
      return new TwDbError('E_UNREACHABLE', `connection refused by ${target}`, {
        cause: error,
        hint: 'Is PostgreSQL running and listening on that host and port? Check the URL in config.yaml (meta.postgres_url), DATABASE_URL or --database-url, and any firewall in between.',
      })
    case 'ENOENT':
      if (e.syscall === 'connect') {
        return new TwDbError('E_UNREACHABLE', `no PostgreSQL socket at ${target}`, {
          cause: error,
          hint: 'Is PostgreSQL running? Check the socket directory and port in the URL.',
        })
      }
      break
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_FAIL':
      return new TwDbError('E_DNS', `cannot resolve host name ${e.hostname ?? ''} of ${target}`.replace('  ', ' '), {
        cause: error,
        hint: 'Check the host name in the URL (config.yaml meta.postgres_url / database.url, DATABASE_URL or --database-url) and your DNS.',
      })
    case 'ETIMEDOUT':
    case 'CONNECT_TIMEOUT':
      return new TwDbError('E_TIMEOUT', `timed out connecting to ${target}`, {
        cause: error,
        hint: 'The host did not answer: check the host and port, firewalls and security groups; raise database.connect_timeout if the server is just slow.',
      })
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return new TwDbError('E_UNREACHABLE', `network unreachable for ${target}`, {
        cause: error,
        hint: 'Check the host in the URL and the network route to it.',
      })
    case SQLSTATE.INVALID_PASSWORD:
    case SQLSTATE.INVALID_AUTHORIZATION:
    case 'SASL_SIGNATURE_MISMATCH':
    case 'AUTH_TYPE_NOT_IMPLEMENTED':
      return new TwDbError('E_AUTH', `authentication failed for ${target}: ${detail}`, {
        cause: error,
        hint: 'Check the user and password in the URL, and that pg_hba.conf allows this user from this host.',
      })
    case SQLSTATE.INVALID_CATALOG_NAME:
      return new TwDbError('E_DATABASE_MISSING', `database does not exist on ${target}: ${detail}`, {
        cause: error,
        hint: 'Create it first (CREATE DATABASE name;) or fix the database name in the URL.',
      })
    case SQLSTATE.TOO_MANY_CONNECTIONS:
      return new TwDbError('E_TOO_MANY_CONNECTIONS', `${target} refused the connection: ${detail}`, {
        cause: error,
        hint: 'The server is out of connection slots: lower database.max_connections here or in the workers, or raise max_connections on the server.',
      })
    case SQLSTATE.CANNOT_CONNECT_NOW:
      return new TwDbError('E_UNREACHABLE', `${target} is not accepting connections yet: ${detail}`, {
        cause: error,
        hint: 'The server is starting up or shutting down; try again in a moment.',
      })
    case SQLSTATE.ADMIN_SHUTDOWN:
    case 'ECONNRESET':
    case 'EPIPE':
    case 'CONNECTION_CLOSED':
    case 'CONNECTION_ENDED':
    case 'CONNECTION_DESTROYED':
      return new TwDbError('E_CONNECTION_LOST', `lost the connection to ${target}: ${detail}`, {
        cause: error,
        hint: 'The server closed the connection (restart, crash, or pg_terminate_backend). Nothing half-done was committed; run the command again.',
      })
  }

  return error
}
