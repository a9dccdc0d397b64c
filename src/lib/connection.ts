import {readFileSync} from 'node:fs'
import net from 'node:net'
import type {ConnectionOptions as TlsOptions} from 'node:tls'

import postgres from 'postgres'

import type {ConnectionConfig} from './config.js'
import {TwDbError, fromPgError} from './errors.js'

export type Sql = postgres.Sql
export type ReservedSql = postgres.ReservedSql
export const APPLICATION_NAME = 'tw-db'

export interface Notice {
  severity: string
  message: string
}

export interface PoolOptions {
  /** Where server notices and warnings go; the lib never prints. */
  onNotice?: (notice: Notice) => void
  /** Overrides the configured pool size (the migrator needs just one). */
  max?: number
}

/** Pools on the embedded database, and the data directory each one keeps running. */
const embeddedPools = new WeakMap<Sql, string>()

/**
 * Opens a pool on the configured database. For the embedded database this
 * first starts it (loading PGlite only then) and points the pool at it.
 */
export async function openPool(connection: ConnectionConfig, options: PoolOptions = {}): Promise<Sql> {
  if (!connection.embedded) return createPool(connection, options)
  const {dataDir} = connection.embedded
  const {acquireEmbedded, releaseEmbedded} = await import('./embedded.js')
  const embedded = await acquireEmbedded(dataDir)
  try {
    const sql = createPool({...connection, host: embedded.host, port: embedded.port}, {...options, max: 1})
    embeddedPools.set(sql, dataDir)
    return sql
  } catch (error) {
    await releaseEmbedded(dataDir)
    throw error
  }
}

/** Whether the pool is on the embedded database, which runs in this process. */
export function isEmbedded(sql: Sql): boolean {
  return embeddedPools.has(sql)
}

/** The only place a postgres.js pool is created. Commands use `openPool`; check-connection needs a server's socket as configured. */
export function createPool(connection: ConnectionConfig, options: PoolOptions): Sql {
  return postgres({
    host: connection.socketPath ?? connection.host,
    port: connection.port,
    database: connection.database,
    username: connection.user,
    password: connection.password,
    ssl: sslOption(connection),
    max: options.max ?? connection.maxConnections,
    connect_timeout: connection.connectTimeout,
    idle_timeout: 30,
    connection: {
      application_name: APPLICATION_NAME,
      // NOTICE-level chatter ("... does not exist, skipping") is noise in a migration log.
      client_min_messages: 'warning',
    },
    // Reading the server's array types costs every command a round trip and a pg_type query,
    // and tw-db reads no arrays. Sessions must then be reserved through reserveSession.
    fetch_types: false,
    onnotice: (notice) => options.onNotice?.({severity: String(notice.severity ?? 'NOTICE'), message: String(notice.message ?? '')}),
    // Never let postgres.js attach query text or parameters to errors as enumerable fields.
    debug: false,
    // postgres.js 3.4.9 documents this option (README, "Custom socket") but its types omit it.
    ...({socket: openSocket} as object),
  })
}

/** What postgres.js passes a custom socket factory: its parsed target. */
interface SocketTarget {
  path?: string | false
  host: string[]
  port: number[]
}

/**
 * The connection's socket, made here rather than by postgres.js so that it
 * closes as libpq's PQfinish does: once the Terminate message is written, the
 * socket is closed. postgres.js would wait for the server to end its side,
 * which happens only after its backend has exited: several ms at the end of
 * every command. (Over TLS the raw socket is driven by the TLS layer and
 * closes as before.)
 */
function openSocket({path, host, port}: SocketTarget): net.Socket {
  const socket = path ? net.connect(path) : net.connect(port[0], host[0])
  socket.once('finish', () => socket.destroy())
  return socket
}

/**
 * One session of the pool for the caller alone (locks and transactions live on it).
 * With fetch_types off, postgres.js 3.4.9 never resolves a reserve() that has to
 * open the connection itself, so a first query opens it.
 */
export async function reserveSession(sql: Sql): Promise<ReservedSql> {
  await sql`select 1`
  return sql.reserve()
}

function sslOption(connection: ConnectionConfig): boolean | 'require' | 'prefer' | 'allow' | TlsOptions {
  const ca = connection.sslRootCert ? readCa(connection.sslRootCert) : undefined
  switch (connection.ssl) {
    case 'disable':
      return false
    case 'allow':
    case 'prefer':
      return connection.ssl
    case 'require':
      // libpq: with a root certificate, require behaves like verify-ca.
      return ca ? {ca, rejectUnauthorized: true, checkServerIdentity: () => undefined} : 'require'
    case 'verify-ca':
      return {ca, rejectUnauthorized: true, checkServerIdentity: () => undefined}
    case 'verify-full':
      return {ca, rejectUnauthorized: true, servername: connection.socketPath ? undefined : connection.host}
  }
}

function readCa(file: string): Buffer {
  try {
    return readFileSync(file)
  } catch (error) {
    throw new TwDbError('E_SSL', `cannot read the TLS root certificate ${file}: ${(error as Error).message}`, {
      exit: 2,
      hint: 'Fix database.ssl_root_cert (or sslrootcert in the URL).',
    })
  }
}

/**
 * Runs `fn` and maps connection-level failures to one clear TwDbError.
 * Errors raised by SQL itself pass through for the caller to explain.
 */
export async function withConnectionErrors<T>(connection: ConnectionConfig, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (error) {
    throw fromPgError(error, connection.display)
  }
}

/** Closes the pool without waiting forever on a connection stuck in a query; stops an embedded database it started. */
export async function closePool(sql: Sql): Promise<void> {
  await sql.end({timeout: 5}).catch(() => undefined)
  const dataDir = embeddedPools.get(sql)
  if (dataDir === undefined) return
  embeddedPools.delete(sql)
  const {releaseEmbedded} = await import('./embedded.js')
  await releaseEmbedded(dataDir)
}

export interface ServerVersion {
  /** e.g. "15.4 (Debian 15.4-1)" */
  version: string
  /** e.g. 150004 */
  versionNum: number
  major: number
}

export async function serverVersion(sql: Sql): Promise<ServerVersion> {
  const [row] = await sql<Array<{version: string; num: number}>>`
    select current_setting('server_version') as version, current_setting('server_version_num')::int as num`
  return {version: row.version, versionNum: row.num, major: Math.floor(row.num / 10000)}
}
