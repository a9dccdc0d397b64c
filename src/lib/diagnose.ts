import {lookup} from 'node:dns/promises'
import {connect as netConnect, isIP, type Socket} from 'node:net'

import type {Config, ConnectionConfig, SslMode} from './config.js'
import {closePool, createPool, reserveSession, type Notice, type ReservedSql, type Sql} from './connection.js'
import {TwDbError, fromPgError, isPgError, SQLSTATE} from './errors.js'
import {redact} from './redact.js'

/**
 * check-connection (SPEC.md section 3): walks the path from the config to a
 * usable database one step at a time and returns what it found as data. A
 * step that fails stops the steps that need it; those are reported as not run.
 * Nothing here prints.
 */

export type StepName =
  | 'config'
  | 'dns'
  | 'tcp'
  | 'tls'
  | 'authentication'
  | 'database'
  | 'server-version'
  | 'types'
  | 'uuid-ossp'
  | 'schema-privilege'
  | 'recovery'
  | 'pooler'
  | 'pool-sizing'
  | 'settings'

/** `skipped`: not run because a step it needs failed; `n/a`: does not apply (the embedded database has no DNS, TLS or pooler). */
export type StepStatus = 'pass' | 'warn' | 'fail' | 'skipped' | 'n/a'

export interface StepResult {
  name: StepName
  /** What a person reads, e.g. "TCP connect". */
  title: string
  status: StepStatus
  /** true for pass and warn, false for fail, null when the step did not run or does not apply. */
  ok: boolean | null
  /** null when the step did not run. */
  ms: number | null
  detail: string
  /** What to do: set on failures and warnings, null otherwise. */
  hint: string | null
}

export interface DiagnosisReport {
  /** Every required step passed (warnings allowed). */
  ok: boolean
  steps: StepResult[]
  server: {version: string | null; versionNum: number | null}
}

export interface StepDefinition {
  name: StepName
  title: string
  /** Steps that must pass (or warn) before this one can run. */
  needs: readonly StepName[]
}

export const STEPS: readonly StepDefinition[] = [
  {name: 'config', title: 'config resolved', needs: []},
  {name: 'dns', title: 'DNS', needs: ['config']},
  {name: 'tcp', title: 'TCP connect', needs: ['dns']},
  {name: 'tls', title: 'TLS', needs: ['tcp']},
  {name: 'authentication', title: 'authentication', needs: ['tls']},
  {name: 'database', title: 'database exists', needs: ['authentication']},
  {name: 'server-version', title: 'server version', needs: ['database']},
  {name: 'types', title: 'JSONB and timestamptz', needs: ['database']},
  {name: 'uuid-ossp', title: 'uuid-ossp', needs: ['database']},
  {name: 'schema-privilege', title: 'CREATE on schema', needs: ['database']},
  {name: 'recovery', title: 'primary or standby', needs: ['database']},
  {name: 'pooler', title: 'connection pooler', needs: ['database']},
  {name: 'pool-sizing', title: 'pool sizing', needs: ['database']},
  {name: 'settings', title: 'settings', needs: ['database']},
]

/** The oldest server tw-db and Template Worker support (SPEC.md section 8). */
export const MIN_SERVER_VERSION_NUM = 120000
/** Pool sizing warns above this share of the server's usable connection slots. */
export const POOL_WARN_RATIO = 0.8
/** --wait: the first pause between attempts, doubled each time up to the maximum. */
export const RETRY_FIRST_DELAY_MS = 250
export const RETRY_MAX_DELAY_MS = 2000
/** How long the pooler probe waits for this connection while another holds a transaction. */
const POOLER_PROBE_TIMEOUT_MS = 2000

// ---------------------------------------------------------------- pure parts

export interface Outcome {
  status: 'pass' | 'warn' | 'fail'
  detail: string
  hint?: string
}

/**
 * The first step `name` needs that did not pass or warn, or undefined when it
 * may run. A step that was itself not run blocks the ones after it too.
 */
export function blockingStep(name: StepName, done: ReadonlyArray<Pick<StepResult, 'name' | 'status'>>): StepName | undefined {
  const definition = STEPS.find((step) => step.name === name)
  for (const need of definition?.needs ?? []) {
    const result = done.find((step) => step.name === need)
    if (!result || result.status === 'fail' || result.status === 'skipped') return need
  }
  return undefined
}

export function titleOf(name: StepName): string {
  return STEPS.find((step) => step.name === name)?.title ?? name
}

export function isReportOk(steps: ReadonlyArray<Pick<StepResult, 'status'>>): boolean {
  return steps.every((step) => step.status !== 'fail' && step.status !== 'skipped')
}

/** The first failing step: the one to name in a summary or a --wait attempt line. */
export function firstFailure(report: DiagnosisReport): StepResult | undefined {
  return report.steps.find((step) => step.status === 'fail')
}

/** --wait: 250 ms, 500 ms, 1 s, 2 s, 2 s, … before attempt `attempt + 1`. */
export function retryDelayMs(attempt: number): number {
  return Math.min(RETRY_FIRST_DELAY_MS * 2 ** Math.max(0, attempt - 1), RETRY_MAX_DELAY_MS)
}

export interface PoolSizingInput {
  workers: number
  /** Connections each worker's pool may open (database.max_connections). */
  poolSize: number
  /** The server's max_connections. */
  maxConnections: number
  superuserReserved: number
  /** reserved_connections (PostgreSQL 16+; 0 before). */
  reserved: number
}

export interface PoolSizing {
  /** workers x pool size, plus one for tw-db itself (migrate, check-connection). */
  needed: number
  /** The slots an ordinary role can use. */
  available: number
  /** needed / available, Infinity when nothing is available. */
  ratio: number
  status: 'pass' | 'warn' | 'fail'
}

export function assessPoolSizing(input: PoolSizingInput): PoolSizing {
  const needed = input.workers * input.poolSize + 1
  const available = input.maxConnections - input.superuserReserved - input.reserved
  const ratio = available > 0 ? needed / available : Number.POSITIVE_INFINITY
  const status = ratio > 1 ? 'fail' : ratio > POOL_WARN_RATIO ? 'warn' : 'pass'
  return {needed, available, ratio, status}
}

/** What the server answered to the SSLRequest packet. */
export type SslAnswer =
  | {kind: 'byte'; byte: number}
  | {kind: 'closed'}
  | {kind: 'timeout'; seconds: number}
  | {kind: 'unix-socket'}

const S = 0x53
const N = 0x4e
const E = 0x45

export function assessTls(sslmode: SslMode, answer: SslAnswer, where: ConfigPlace): Outcome {
  const mode = `sslmode=${sslmode}`
  const demandsTls = sslmode === 'require' || sslmode === 'verify-ca' || sslmode === 'verify-full'
  switch (answer.kind) {
    case 'unix-socket':
      return {status: 'pass', detail: `not used on a unix socket (${mode})`}
    case 'timeout':
      return {
        status: 'fail',
        detail: `the server accepted the TCP connection but did not answer the SSL request within ${answer.seconds} s`,
        hint: `Something other than PostgreSQL may be listening there, or a proxy holds the connection: check the port in ${where.text}.`,
      }
    case 'closed':
      return {
        status: 'fail',
        detail: 'the server closed the connection without answering the SSL request',
        hint: `A proxy or something other than PostgreSQL listens there, or the server is shutting down: check the port in ${where.text}.`,
      }
    case 'byte':
      break
  }
  if (answer.byte === S) {
    return sslmode === 'disable'
      ? {status: 'pass', detail: `the server offers TLS; not used (${mode})`}
      : {status: 'pass', detail: `the server offers TLS; this connection uses it (${mode})`}
  }
  if (answer.byte === N) {
    if (demandsTls) {
      return {
        status: 'fail',
        detail: `the server does not offer TLS, but ${mode} demands it`,
        hint: `Turn TLS on in the server (ssl = on with a certificate in postgresql.conf), or, on a trusted network only, set the SSL mode to prefer or disable (database.ssl, or ?sslmode= in ${where.text}).`,
      }
    }
    return sslmode === 'disable'
      ? {status: 'pass', detail: `the server does not offer TLS; not used (${mode})`}
      : {status: 'pass', detail: `the server does not offer TLS; connecting unencrypted (${mode})`}
  }
  if (answer.byte === E) {
    return {
      status: 'fail',
      detail: 'the server answered the SSL request with an error (a server older than PostgreSQL 7.0, or not PostgreSQL)',
      hint: `Check the host and port in ${where.text}.`,
    }
  }
  const printable = answer.byte >= 0x20 && answer.byte < 0x7f ? ` '${String.fromCharCode(answer.byte)}'` : ''
  return {
    status: 'fail',
    detail: `the service there does not speak the PostgreSQL protocol (it answered 0x${answer.byte.toString(16).padStart(2, '0')}${printable})`,
    hint: `Wrong port? Check the port in ${where.text} (PostgreSQL listens on 5432 by default, PgBouncer on 6432).`,
  }
}

export interface UuidOsspFacts {
  /** The default version the server could install, null when the extension is not available. */
  availableVersion: string | null
  installedVersion: string | null
  installedSchema: string | null
  superuser: boolean
  /** Trusted extensions (PostgreSQL 13+) may be created by a role with CREATE on the database. */
  trusted: boolean
  canCreateInDatabase: boolean
  database: string
  user: string
}

export function assessUuidOssp(facts: UuidOsspFacts): Outcome {
  if (facts.installedVersion) {
    return {status: 'pass', detail: `installed (version ${facts.installedVersion}, schema ${facts.installedSchema ?? '?'})`}
  }
  if (!facts.availableVersion) {
    return {
      status: 'fail',
      detail: 'not available on the server (not in pg_available_extensions); the first migration needs it',
      hint: 'Install the PostgreSQL contrib package on the database server (e.g. postgresql-contrib), or use an image that ships it.',
    }
  }
  if (facts.superuser) {
    return {status: 'pass', detail: `available (version ${facts.availableVersion}), not installed; migrate creates it (${facts.user} is a superuser)`}
  }
  if (facts.trusted && facts.canCreateInDatabase) {
    return {
      status: 'pass',
      detail: `available (version ${facts.availableVersion}), not installed; migrate creates it (trusted extension, ${facts.user} may CREATE in the database)`,
    }
  }
  const why = facts.trusted
    ? `${facts.user} is not a superuser and lacks CREATE on database ${facts.database}`
    : `${facts.user} is not a superuser, and this server only lets superusers create it`
  return {
    status: 'fail',
    detail: `available (version ${facts.availableVersion}) but not installed, and ${why}`,
    hint: facts.trusted
      ? `As a superuser run CREATE EXTENSION "uuid-ossp"; in database ${facts.database}, or GRANT CREATE ON DATABASE ${facts.database} TO ${facts.user};`
      : `As a superuser run CREATE EXTENSION "uuid-ossp"; in database ${facts.database} once; migrate then finds it installed.`,
  }
}

export function assessServerVersion(version: string, versionNum: number): Outcome {
  if (versionNum >= MIN_SERVER_VERSION_NUM) return {status: 'pass', detail: `PostgreSQL ${version} (${versionNum})`}
  return {
    status: 'fail',
    detail: `PostgreSQL ${version} (${versionNum}) is too old: 12 or later is required`,
    hint: 'Upgrade the server to PostgreSQL 12 or later (pg_upgrade, or a dump and restore).',
  }
}

/** How the user can find the URL they configured, for hints: "--database-url", "/srv/tw/config.yaml (meta.postgres_url)". */
export interface ConfigPlace {
  text: string
}

export function configPlace(connection: Pick<ConnectionConfig, 'source' | 'sourceDetail'>): ConfigPlace {
  switch (connection.source) {
    case 'flag':
      return {text: '--database-url'}
    case 'env':
      return {text: 'DATABASE_URL'}
    case 'file':
      return {text: connection.sourceDetail}
    case 'libpq':
      return {text: 'PGHOST/PGPORT/PGUSER/PGDATABASE'}
    case 'default':
      return {text: 'the default (nothing configured: the embedded database)'}
  }
}

/** Where a failure to connect and log in (postgres.js) belongs, with what to say. */
export interface ConnectFailure {
  /** tls: the handshake failed; database: logged in, but the database is missing. */
  step: 'tls' | 'authentication' | 'database'
  detail: string
  hint: string
}

export function classifyConnectError(error: unknown, connection: Pick<ConnectionConfig, 'display' | 'user' | 'database' | 'source' | 'sourceDetail'>): ConnectFailure {
  const where = configPlace(connection).text
  const e = error as {code?: string; message?: string}
  const code = String(e?.code ?? '')
  const message = String(e?.message ?? error)
  const sqlstate = isPgError(error) ? ` (SQLSTATE ${code})` : ''
  switch (code) {
    case SQLSTATE.INVALID_PASSWORD:
    case 'SASL_SIGNATURE_MISMATCH':
      return {
        step: 'authentication',
        detail: `${message}${sqlstate}`,
        hint: `Check the user and password in ${where}, and that pg_hba.conf allows user ${connection.user} from this host with a password method (scram-sha-256 or md5).`,
      }
    case SQLSTATE.INVALID_AUTHORIZATION:
      return {
        step: 'authentication',
        detail: `${message}${sqlstate}`,
        hint: /pg_hba\.conf/.test(message)
          ? 'Add a pg_hba.conf line for this user, database and client address (host … scram-sha-256), then reload PostgreSQL (SELECT pg_reload_conf();).'
          : `Check the user in ${where} (CREATE ROLE … LOGIN PASSWORD … if it should exist), and pg_hba.conf.`,
      }
    case 'AUTH_TYPE_NOT_IMPLEMENTED':
      return {
        step: 'authentication',
        detail: message,
        hint: 'pg_hba.conf asks for an authentication method this client cannot use: use scram-sha-256 or md5 for this user and host.',
      }
    case SQLSTATE.INVALID_CATALOG_NAME:
      return {
        step: 'database',
        detail: `${message}${sqlstate}`,
        hint: `Create it (CREATE DATABASE ${quoteIdentifier(connection.database)} OWNER ${quoteIdentifier(connection.user)};) or fix the database name in ${where}.`,
      }
  }
  const mapped = fromPgError(error, connection.display)
  if (mapped instanceof TwDbError) {
    if (mapped.code === 'E_SSL') return {step: 'tls', detail: mapped.message, hint: mapped.hint ?? ''}
    const hint = code === SQLSTATE.CANNOT_CONNECT_NOW ? `${mapped.hint ?? ''} tw-db check-connection --wait SECONDS waits for it.`.trim() : mapped.hint ?? ''
    return {step: 'authentication', detail: `${mapped.message}${sqlstate}`, hint}
  }
  return {
    step: 'authentication',
    detail: `${message}${sqlstate}`,
    hint: `Check the user, password and database in ${where}, and pg_hba.conf.`,
  }
}

function quoteIdentifier(name: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`
}

// ---------------------------------------------------------------- the steps

export interface DiagnoseOptions {
  /** Worker processes sharing the server, for pool sizing (default 1). */
  workers?: number
  /** Where server notices go; the lib never prints. */
  onNotice?: (notice: Notice) => void
}

export interface WaitOptions extends DiagnoseOptions {
  /** Retry until every required step passes or this many seconds have passed. */
  waitSeconds?: number
  /** Called after each failed attempt that will be retried. */
  onAttempt?: (attempt: FailedAttempt) => void
}

export interface FailedAttempt {
  attempt: number
  step: StepResult
  retryInMs: number
  remainingMs: number
}

interface Context {
  connection: ConnectionConfig
  /** Checking the embedded database: the network and pooler steps do not apply. */
  embedded: boolean
  where: ConfigPlace
  workers: number
  timeoutMs: number
  onNotice?: (notice: Notice) => void
  socket?: Socket
  sql?: Sql
  reserved?: ReservedSql
  connectFailure?: ConnectFailure
  facts?: SessionFacts
  server: DiagnosisReport['server']
}

interface SessionFacts {
  user: string
  database: string
  pid: number
  versionText: string
  versionNum: number
  superuser: boolean
  tls: string | null
}

type StepRun = (ctx: Context) => Promise<Outcome>

/**
 * Runs the steps once, or with `waitSeconds` until they all pass (backing off
 * from 250 ms to 2 s between attempts) or the time is up; returns the last report.
 */
export async function diagnoseConnection(config: Config, options: WaitOptions = {}): Promise<DiagnosisReport> {
  const deadline = Date.now() + (options.waitSeconds ?? 0) * 1000
  for (let attempt = 1; ; attempt++) {
    const remainingMs = deadline - Date.now()
    const report = await diagnoseOnce(config, options, options.waitSeconds ? Math.max(1000, remainingMs) : undefined)
    const failed = firstFailure(report)
    const left = deadline - Date.now()
    if (report.ok || !failed || left <= 0) return report
    const retryInMs = Math.min(retryDelayMs(attempt), left)
    options.onAttempt?.({attempt, step: failed, retryInMs, remainingMs: left})
    await new Promise((resolve) => setTimeout(resolve, retryInMs))
  }
}

/** One pass over every step. `budgetMs` caps the network timeouts (for --wait). */
export async function diagnoseOnce(config: Config, options: DiagnoseOptions = {}, budgetMs?: number): Promise<DiagnosisReport> {
  const connectTimeoutMs = config.connection.connectTimeout * 1000
  const timeoutMs = budgetMs === undefined ? connectTimeoutMs : Math.min(connectTimeoutMs, budgetMs)
  const embedded = config.connection.embedded
  const ctx: Context = {
    connection: config.connection,
    embedded: embedded !== undefined,
    where: configPlace(config.connection),
    workers: options.workers ?? 1,
    timeoutMs,
    onNotice: options.onNotice,
    server: {version: null, versionNum: null},
  }
  const steps: StepResult[] = []
  const stopEmbedded = embedded ? await useEmbedded(ctx, embedded.dataDir) : undefined
  try {
    for (const definition of STEPS) {
      const blocker = blockingStep(definition.name, steps)
      if (blocker) {
        steps.push(notRun(definition, blocker))
        continue
      }
      if (ctx.embedded && NOT_EMBEDDED.has(definition.name)) {
        steps.push(notApplicable(definition))
        continue
      }
      const started = performance.now()
      let outcome: Outcome
      try {
        outcome = await RUNS[definition.name](ctx)
      } catch (error) {
        outcome = unexpected(error)
      }
      const ms = Math.round(performance.now() - started)
      steps.push(result(definition, outcome, ms))
      // A TLS handshake failure only shows when postgres.js connects: it belongs to the TLS step.
      if (definition.name === 'authentication' && ctx.connectFailure?.step === 'tls') {
        const tls = steps.findIndex((step) => step.name === 'tls')
        const failure = ctx.connectFailure
        steps[tls] = result(STEPS[tls], {status: 'fail', detail: failure.detail, hint: failure.hint}, (steps[tls].ms ?? 0) + ms)
        steps[steps.length - 1] = notRun(definition, 'tls')
      }
    }
  } finally {
    ctx.socket?.destroy()
    ctx.reserved?.release()
    if (ctx.sql) await closePool(ctx.sql)
    await stopEmbedded?.()
  }
  return {ok: isReportOk(steps), steps, server: ctx.server}
}

function result(definition: StepDefinition, outcome: Outcome, ms: number): StepResult {
  return {
    name: definition.name,
    title: definition.title,
    status: outcome.status,
    ok: outcome.status !== 'fail',
    ms,
    detail: redact(outcome.detail),
    hint: outcome.status === 'pass' || !outcome.hint ? null : redact(outcome.hint),
  }
}

function notRun(definition: StepDefinition, blocker: StepName): StepResult {
  return {name: definition.name, title: definition.title, status: 'skipped', ok: null, ms: null, detail: `not run: needs ${titleOf(blocker)}`, hint: null}
}

/** Starts the embedded database and points the checks at its socket; returns what stops it. */
async function useEmbedded(ctx: Context, dataDir: string): Promise<() => Promise<void>> {
  const {acquireEmbedded, releaseEmbedded} = await import('./embedded.js')
  const running = await acquireEmbedded(dataDir)
  ctx.connection = {...ctx.connection, host: running.host, port: running.port, embedded: undefined}
  return () => releaseEmbedded(dataDir)
}

/** Steps with nothing to check on the embedded database: it runs in this process, on 127.0.0.1, alone. */
const NOT_EMBEDDED: ReadonlySet<StepName> = new Set(['dns', 'tls', 'pooler', 'pool-sizing'])

function notApplicable(definition: StepDefinition): StepResult {
  return {name: definition.name, title: definition.title, status: 'n/a', ok: null, ms: null, detail: 'does not apply to the embedded database', hint: null}
}

function unexpected(error: unknown): Outcome {
  const e = error as {message?: string; code?: string}
  if (isPgError(error)) {
    return {
      status: 'fail',
      detail: `PostgreSQL refused the check: ${e.message} (SQLSTATE ${e.code})`,
      hint: 'The user may lack access to a system view this check reads; the other steps still tell the state of the connection.',
    }
  }
  return {status: 'fail', detail: String(e?.message ?? error), hint: 'Run again with --verbose; if this persists, report it as a tw-db bug.'}
}

/** Rejects after `ms` with a code the callers recognise; the timer never keeps the process alive. */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error('timed out'), {code: 'ETIMEDOUT'})), ms)
    timer.unref()
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

function seconds(ms: number): string {
  return `${Math.round(ms / 100) / 10}`
}

function hostPort(connection: ConnectionConfig): string {
  return connection.socketPath ? `${connection.socketPath}/.s.PGSQL.${connection.port}` : `${connection.host.includes(':') ? `[${connection.host}]` : connection.host}:${connection.port}`
}

const RUNS: Record<StepName, StepRun> = {
  async config(ctx) {
    const c = ctx.connection
    const settings = `sslmode ${c.ssl}, pool ${c.maxConnections}, connect timeout ${c.connectTimeout} s`
    return {status: 'pass', detail: `${c.display} from ${c.sourceDetail} (${settings})`}
  },

  async dns(ctx) {
    const {host, socketPath} = ctx.connection
    if (socketPath) return {status: 'pass', detail: `unix socket directory ${socketPath}: no lookup`}
    if (isIP(host)) return {status: 'pass', detail: `${host} is an IP address: no lookup`}
    try {
      const addresses = await withTimeout(lookup(host, {all: true}), ctx.timeoutMs)
      return {status: 'pass', detail: `${host} resolves to ${addresses.map((a) => a.address).join(', ')}`}
    } catch (error) {
      const code = String((error as {code?: string}).code ?? '')
      const temporary = code === 'EAI_AGAIN' || code === 'ETIMEDOUT'
      return {
        status: 'fail',
        detail: temporary ? `cannot resolve ${host} now: the DNS server did not answer (${code})` : `cannot resolve host name ${host} (${code || 'lookup failed'})`,
        hint: temporary
          ? 'Check the DNS servers this machine uses (/etc/resolv.conf) and its network.'
          : `Check the host in ${ctx.where.text}. Inside a container, use the database's service name (e.g. the docker-compose service), not localhost.`,
      }
    }
  },

  async tcp(ctx) {
    const c = ctx.connection
    const target = hostPort(c)
    try {
      ctx.socket = await openSocket(c, ctx.timeoutMs)
      const remote = ctx.socket.remoteAddress ? `${ctx.socket.remoteAddress}:${ctx.socket.remotePort}` : target
      return {status: 'pass', detail: `connected to ${remote}`}
    } catch (error) {
      const code = String((error as {code?: string}).code ?? '')
      switch (code) {
        case 'ECONNREFUSED':
          return {
            status: 'fail',
            detail: `connection refused by ${target}: nothing listens there`,
            hint: `Is PostgreSQL running, and listening on ${c.host} port ${c.port} (listen_addresses and port in postgresql.conf)? Check the URL in ${ctx.where.text}, and any firewall between.`,
          }
        case 'ENOENT':
          return {
            status: 'fail',
            detail: `no PostgreSQL socket at ${target}`,
            hint: `Is PostgreSQL running? Check the socket directory (unix_socket_directories) and the port in ${ctx.where.text}.`,
          }
        case 'ETIMEDOUT':
          return {
            status: 'fail',
            detail: `no answer from ${target} within ${seconds(ctx.timeoutMs)} s`,
            hint: `A firewall or security group drops the traffic, or the host or port is wrong: check ${ctx.where.text}. If the server is only slow, raise database.connect_timeout.`,
          }
        case 'EHOSTUNREACH':
        case 'ENETUNREACH':
          return {
            status: 'fail',
            detail: `no route to ${target} (${code})`,
            hint: `Check the host in ${ctx.where.text} and the network route (VPN, firewall) to it.`,
          }
        case 'EACCES':
          return {status: 'fail', detail: `permission denied opening ${target}`, hint: 'Check the permissions of the socket directory.'}
        default:
          return {status: 'fail', detail: `cannot connect to ${target}: ${(error as Error).message}`, hint: `Check the host and port in ${ctx.where.text}, and any firewall between.`}
      }
    }
  },

  async tls(ctx) {
    const socket = ctx.socket!
    const answer = ctx.connection.socketPath ? ({kind: 'unix-socket'} as const) : await askForTls(socket, ctx.timeoutMs)
    socket.destroy()
    ctx.socket = undefined
    return assessTls(ctx.connection.ssl, answer, ctx.where)
  },

  async authentication(ctx) {
    const connection = {...ctx.connection, connectTimeout: Math.max(1, Math.ceil(ctx.timeoutMs / 1000))}
    // One connection: every later check runs on the same session, which the pooler check needs.
    ctx.sql = createPool(connection, {max: 1, onNotice: ctx.onNotice})
    try {
      // Constant text without parameters: the simple protocol, which works behind transaction poolers too.
      const [row] = await ctx.sql.unsafe<Array<{
        user: string
        database: string
        pid: number
        version: string
        num: string
        superuser: string
        tls: string | null
      }>>(`select current_user as user, current_database() as database, pg_backend_pid() as pid,
          current_setting('server_version') as version, current_setting('server_version_num') as num,
          current_setting('is_superuser') as superuser,
          (select version from pg_stat_ssl where pid = pg_backend_pid() and ssl) as tls`)
      ctx.facts = {
        user: row.user,
        database: row.database,
        pid: Number(row.pid),
        versionText: row.version,
        versionNum: Number(row.num),
        superuser: row.superuser === 'on',
        tls: row.tls,
      }
      ctx.server = {version: ctx.facts.versionText, versionNum: ctx.facts.versionNum}
      const over = ctx.connection.socketPath ? 'over a unix socket' : ctx.facts.tls ? `over ${ctx.facts.tls}` : 'without TLS'
      return {status: 'pass', detail: `logged in as ${row.user}${ctx.facts.superuser ? ' (superuser)' : ''} ${over}`}
    } catch (error) {
      const failure = classifyConnectError(error, ctx.connection)
      ctx.connectFailure = failure
      if (failure.step === 'database') {
        // PostgreSQL checks the password before it looks the database up.
        return {status: 'pass', detail: `${ctx.connection.user} was accepted; the database was not (next step)`}
      }
      return {status: 'fail', detail: failure.detail, hint: failure.hint}
    }
  },

  async database(ctx) {
    if (ctx.connectFailure?.step === 'database') {
      return {status: 'fail', detail: ctx.connectFailure.detail, hint: ctx.connectFailure.hint}
    }
    ctx.reserved = await reserveSession(ctx.sql!)
    const [row] = await ctx.reserved.unsafe<Array<{name: string; encoding: string}>>(
      `select datname as name, pg_encoding_to_char(encoding) as encoding from pg_database where datname = current_database()`,
    )
    return {status: 'pass', detail: `${row.name} (encoding ${row.encoding})`}
  },

  async 'server-version'(ctx) {
    return assessServerVersion(ctx.facts!.versionText, ctx.facts!.versionNum)
  },

  async types(ctx) {
    const [row] = await ctx.reserved!.unsafe<Array<{jsonb: string | null; timestamptz: string | null; timezone: string}>>(
      `select to_regtype('jsonb')::text as jsonb, to_regtype('timestamptz')::text as timestamptz, current_setting('TimeZone') as timezone`,
    )
    const missing = [row.jsonb ? undefined : 'jsonb', row.timestamptz ? undefined : 'timestamptz'].filter(Boolean)
    if (missing.length > 0) {
      return {
        status: 'fail',
        detail: `missing type${missing.length > 1 ? 's' : ''}: ${missing.join(', ')}`,
        hint: 'Template Worker needs a real PostgreSQL 12+ server (not a look-alike without jsonb or timestamptz).',
      }
    }
    // Use both for real: a look-alike may know the names and still fail on them.
    await ctx.reserved!.unsafe(`select '{"k": [1, 2]}'::jsonb @> '{"k": [1]}'::jsonb as contains, now()::timestamptz as now`)
    return {status: 'pass', detail: `jsonb and timestamptz work (TimeZone ${row.timezone})`}
  },

  async 'uuid-ossp'(ctx) {
    const trustedColumn = ctx.facts!.versionNum >= 130000
      ? `(select v.trusted from pg_available_extension_versions v where v.name = 'uuid-ossp' and v.version = a.default_version)`
      : 'false'
    const [row] = await ctx.reserved!.unsafe<Array<{
      available: string | null
      trusted: boolean | null
      installed: string | null
      schema: string | null
      can_create: boolean
    }>>(
      `select (select default_version from pg_available_extensions where name = 'uuid-ossp') as available,
          (select ${trustedColumn} from pg_available_extensions a where a.name = 'uuid-ossp') as trusted,
          (select extversion from pg_extension where extname = 'uuid-ossp') as installed,
          (select n.nspname from pg_extension e join pg_namespace n on n.oid = e.extnamespace where e.extname = 'uuid-ossp') as schema,
          has_database_privilege(current_database(), 'CREATE') as can_create`,
    )
    return assessUuidOssp({
      availableVersion: row.available,
      installedVersion: row.installed,
      installedSchema: row.schema,
      superuser: ctx.facts!.superuser,
      trusted: Boolean(row.trusted),
      canCreateInDatabase: Boolean(row.can_create),
      database: ctx.facts!.database,
      user: ctx.facts!.user,
    })
  },

  async 'schema-privilege'(ctx) {
    const [row] = await ctx.reserved!.unsafe<Array<{schema: string | null; can_create: boolean | null; search_path: string}>>(
      `select current_schema() as schema, has_schema_privilege(current_schema(), 'CREATE') as can_create, current_setting('search_path') as search_path`,
    )
    const user = ctx.facts!.user
    if (!row.schema) {
      return {
        status: 'fail',
        detail: `no schema of the search_path (${row.search_path}) exists, so there is nowhere to create tables`,
        hint: `Create the schema, or fix the search_path (ALTER ROLE ${quoteIdentifier(user)} SET search_path = public;).`,
      }
    }
    if (row.can_create) return {status: 'pass', detail: `${user} may CREATE in schema ${row.schema}`}
    return {
      status: 'fail',
      detail: `${user} may not CREATE in schema ${row.schema}: migrate cannot create or alter tables`,
      hint: `As the schema owner or a superuser: GRANT CREATE ON SCHEMA ${quoteIdentifier(row.schema)} TO ${quoteIdentifier(user)}; (PostgreSQL 15+ no longer grants it to every role on public.)`,
    }
  },

  async recovery(ctx) {
    const [row] = await ctx.reserved!.unsafe<Array<{standby: boolean; read_only: string}>>(
      `select pg_is_in_recovery() as standby, current_setting('default_transaction_read_only') as read_only`,
    )
    if (row.standby) {
      return {
        status: 'warn',
        detail: 'a standby (pg_is_in_recovery() is true): read-only',
        hint: 'Reading works (status, backup), but migrate refuses a standby and nothing can write to it: point migrate, reset and restore at the primary.',
      }
    }
    if (row.read_only === 'on') {
      return {
        status: 'warn',
        detail: 'the primary, but default_transaction_read_only is on for this session',
        hint: `Writes will fail: ALTER ROLE/DATABASE … RESET default_transaction_read_only for ${ctx.facts!.user}.`,
      }
    }
    return {status: 'pass', detail: 'the primary (not in recovery)'}
  },

  async pooler(ctx) {
    const reserved = ctx.reserved!
    const first = ctx.facts!.pid
    // Separate statements on one client connection: a transaction pooler may hand each to another backend.
    const pids = [first, await backendPid(reserved), await backendPid(reserved)]
    if (new Set(pids).size > 1) return transactionPooling(`the backend pid changed between statements on one connection (${[...new Set(pids)].join(', ')})`)

    // An idle pooler hands back the server connection used last, so the pid alone proves nothing:
    // hold a transaction open on a second connection and ask again. Directly connected, or through a
    // session pool, each client keeps its own backend.
    const other = createPool({...ctx.connection, connectTimeout: Math.max(1, Math.ceil(ctx.timeoutMs / 1000))}, {max: 1, onNotice: ctx.onNotice})
    try {
      const probe = await other.begin(async (tx) => {
        const otherPid = await backendPid(tx)
        const again = await withTimeout(backendPid(reserved), POOLER_PROBE_TIMEOUT_MS).catch(() => undefined)
        return {otherPid, again}
      })
      if (probe.otherPid === first) return transactionPooling(`a second client connection was given this connection's backend (pid ${first})`)
      if (probe.again === undefined) {
        return transactionPooling(`this connection had to wait while a second connection held a transaction open: they share server connections`)
      }
      if (probe.again !== first) {
        return transactionPooling(`the backend pid changed (${first}, then ${probe.again}) while a second connection held a transaction open`)
      }
      return {status: 'pass', detail: `backend pid ${first} stayed with this connection, also while another held a transaction (pid ${probe.otherPid}): no transaction pooling`}
    } catch (error) {
      return {
        status: 'pass',
        detail: `backend pid ${first} stayed the same over ${pids.length} statements; the second-connection probe could not run (${(error as Error).message})`,
      }
    } finally {
      await closePool(other)
    }
  },

  async 'pool-sizing'(ctx) {
    const [row] = await ctx.reserved!.unsafe<Array<{max: string; superuser_reserved: string; reserved: string | null; in_use: number}>>(
      `select current_setting('max_connections') as max, current_setting('superuser_reserved_connections') as superuser_reserved,
          current_setting('reserved_connections', true) as reserved,
          (select count(*)::int from pg_stat_activity where backend_type = 'client backend') as in_use`,
    )
    const input: PoolSizingInput = {
      workers: ctx.workers,
      poolSize: ctx.connection.maxConnections,
      maxConnections: Number(row.max),
      superuserReserved: Number(row.superuser_reserved),
      reserved: Number(row.reserved ?? 0),
    }
    const sizing = assessPoolSizing(input)
    const reservedText = input.reserved > 0 ? ` − ${input.superuserReserved} superuser_reserved − ${input.reserved} reserved` : ` − ${input.superuserReserved} superuser_reserved_connections`
    const share = Number.isFinite(sizing.ratio) ? `${Math.round(sizing.ratio * 100)} %` : 'no slot left'
    const detail = `${input.workers} worker${input.workers === 1 ? '' : 's'} × pool ${input.poolSize} + 1 = ${sizing.needed} of ${sizing.available} usable connections (max_connections ${input.maxConnections}${reservedText}): ${share}; ${row.in_use} in use now`
    if (sizing.status === 'pass') return {status: 'pass', detail}
    return {
      status: sizing.status,
      detail: sizing.status === 'fail' ? `${detail}: the workers cannot all connect` : `${detail}: above ${Math.round(POOL_WARN_RATIO * 100)} %, little room for psql, backups or a deploy overlap`,
      hint: 'Lower database.max_connections (MAX_DB_CONNECTIONS), run fewer workers, or raise max_connections on the server (needs a restart).',
    }
  },

  async settings(ctx) {
    const [row] = await ctx.reserved!.unsafe<Array<Record<string, string>>>(
      `select current_setting('max_connections') as max_connections, current_setting('shared_buffers') as shared_buffers,
          current_setting('work_mem') as work_mem, current_setting('ssl') as ssl`,
    )
    return {status: 'pass', detail: Object.entries(row).map(([name, value]) => `${name}=${value}`).join(', ')}
  },
}

function backendPid(sql: {unsafe: Sql['unsafe']}): Promise<number> {
  return sql.unsafe<Array<{pid: number}>>('select pg_backend_pid() as pid').then(([row]) => Number(row.pid))
}

function transactionPooling(evidence: string): Outcome {
  return {
    status: 'warn',
    detail: `${evidence}: a transaction pooler is in between`,
    hint: 'Session advisory locks are unsafe through it: run tw-db migrate against PostgreSQL directly, or through a session-mode pool (PgBouncer pool_mode = session).',
  }
}

function openSocket(connection: ConnectionConfig, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connection.socketPath
      ? netConnect({path: `${connection.socketPath}/.s.PGSQL.${connection.port}`})
      : netConnect({host: connection.host, port: connection.port})
    const timer = setTimeout(() => {
      socket.destroy()
      reject(Object.assign(new Error('connect timed out'), {code: 'ETIMEDOUT'}))
    }, timeoutMs)
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.removeAllListeners('error')
      // Errors after this point surface through askForTls.
      socket.on('error', () => undefined)
      resolve(socket)
    })
    socket.once('error', (error) => {
      clearTimeout(timer)
      socket.destroy()
      reject(error)
    })
  })
}

/** PostgreSQL's SSLRequest: length 8, code 80877103 (1234 5679). The server answers one byte: S or N. */
const SSL_REQUEST = Buffer.from([0x00, 0x00, 0x00, 0x08, 0x04, 0xd2, 0x16, 0x2f])

function askForTls(socket: Socket, timeoutMs: number): Promise<SslAnswer> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => done({kind: 'timeout', seconds: Number(seconds(timeoutMs))}), timeoutMs)
    function done(answer: SslAnswer) {
      clearTimeout(timer)
      socket.removeAllListeners('data')
      socket.removeAllListeners('close')
      resolve(answer)
    }
    socket.once('data', (chunk: Buffer) => done({kind: 'byte', byte: chunk[0]}))
    socket.once('close', () => done({kind: 'closed'}))
    socket.write(SSL_REQUEST)
  })
}
