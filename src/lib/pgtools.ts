/**
 * Finds and runs PostgreSQL's client programs (pg_dump, pg_restore, psql).
 * The password reaches a child only through its environment (PGPASSWORD),
 * never its argv, and no shell is ever involved.
 */
import {execFile, spawn, type ChildProcess, type StdioOptions} from 'node:child_process'
import {readdir, realpath, stat} from 'node:fs/promises'
import path from 'node:path'
import {promisify} from 'node:util'

import type {ConnectionConfig} from './config.js'
import {APPLICATION_NAME, type ServerVersion} from './connection.js'
import {TwDbError} from './errors.js'

export type PgToolName = 'pg_dump' | 'pg_restore' | 'psql'

export interface PgTool {
  name: PgToolName
  path: string
  /** e.g. "15.18" */
  version: string
  major: number
}

/** Directories to search, most specific first. */
async function candidateDirs(pgBinDir: string | undefined, env: NodeJS.ProcessEnv): Promise<string[]> {
  const dirs: string[] = []
  if (pgBinDir) dirs.push(pgBinDir)
  if (env.PG_BIN_DIR) dirs.push(env.PG_BIN_DIR)
  dirs.push(...(env.PATH ?? '').split(path.delimiter).filter(Boolean))
  for (const [parent, pattern] of [
    ['/usr/lib/postgresql', /^\d+$/],
    ['/usr/local/opt', /^postgresql(@\d+)?$/],
    ['/opt/homebrew/opt', /^postgresql(@\d+)?$/],
    ['/usr', /^pgsql-\d+$/],
  ] as const) {
    const entries = await readdir(parent).catch(() => [] as string[])
    for (const entry of entries.filter((e) => pattern.test(e))) dirs.push(path.join(parent, entry, 'bin'))
  }
  return dirs
}

export function parseToolVersion(output: string): {version: string; major: number} | undefined {
  const match = /\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?/.exec(output)
  if (!match) return undefined
  return {version: match[2] === undefined ? match[1] : `${match[1]}.${match[2]}`, major: Number(match[1])}
}

export interface InstalledCopy {
  file: string
  /** Debian's pg_wrapper and the like: a differently named program that runs one of the real ones. */
  wrapper: boolean
  /** Position of its directory in the search order. */
  order: number
}

/** Every installed copy of a tool, one per real file, in search order. */
async function installedCopies(name: PgToolName, pgBinDir: string | undefined, env: NodeJS.ProcessEnv): Promise<InstalledCopy[]> {
  const seen = new Set<string>()
  const copies: InstalledCopy[] = []
  for (const [order, dir] of (await candidateDirs(pgBinDir, env)).entries()) {
    const file = path.join(dir, name)
    const real = await realpath(file).catch(() => undefined)
    if (!real || seen.has(real)) continue
    seen.add(real)
    if (!(await stat(real).then((s) => s.isFile()).catch(() => false))) continue
    copies.push({file, wrapper: path.basename(real) !== name, order})
  }
  return copies
}

/** Asks each copy its version, all at once; copies that give none are dropped. */
async function probe(name: PgToolName, copies: InstalledCopy[]): Promise<Array<PgTool & InstalledCopy>> {
  // Made here, not when the module loads: reading execFile would load child_process for every command (scripts/bundle.mjs).
  const execFileAsync = promisify(execFile)
  const probed = await Promise.all(
    copies.map(async (copy) => {
      const output = await execFileAsync(copy.file, ['--version'], {timeout: 10_000}).then((r) => r.stdout, () => '')
      const version = parseToolVersion(output)
      return version ? {name, path: copy.file, ...version, ...copy} : undefined
    }),
  )
  return probed.filter((tool) => tool !== undefined)
}

/**
 * Installed copies of a tool with their versions, best first (newest; a real
 * binary before a wrapper). Wrappers are asked only when the real binaries
 * found are not `enough`: Debian's pg_wrapper is a Perl script that takes
 * 60 to 110 ms to answer --version, only to run one of the
 * /usr/lib/postgresql/N/bin binaries that are searched directly anyway.
 */
export async function findTools(
  name: PgToolName,
  pgBinDir?: string,
  env: NodeJS.ProcessEnv = process.env,
  enough: (realBinaries: PgTool[]) => boolean | Promise<boolean> = (realBinaries) => realBinaries.length > 0,
): Promise<PgTool[]> {
  return rankTools(name, await installedCopies(name, pgBinDir, env), enough)
}

async function rankTools(name: PgToolName, copies: InstalledCopy[], enough: (realBinaries: PgTool[]) => boolean | Promise<boolean>): Promise<PgTool[]> {
  const real = await probe(name, copies.filter((copy) => !copy.wrapper))
  const found = (await enough(real)) ? real : [...real, ...(await probe(name, copies.filter((copy) => copy.wrapper)))]
  found.sort((a, b) => b.major - a.major || Number(a.wrapper) - Number(b.wrapper) || a.order - b.order)
  return found.map((tool) => ({name: tool.name, path: tool.path, version: tool.version, major: tool.major}))
}

type ServerMajor = Pick<ServerVersion, 'major' | 'version'>

export interface ToolPick {
  /**
   * The only real binary installed, when there is just one: `choose` will
   * pick it unless it proves too old for the server. Known before any version
   * is asked, so that the caller can start it meanwhile (about 30 ms here).
   */
  likely?: string
  /**
   * Asks the copies their versions (once, however often called) and picks the
   * newest whose major version is at least the server's; fails naming every copy found.
   */
  choose: () => Promise<PgTool>
}

/**
 * The installed copies of a tool, to pick the newest whose major version is
 * at least the server's (pg_dump refuses older-or-equal servers only).
 * `server` may still be on its way: the copies are asked their versions meanwhile.
 */
export async function pickTool(name: PgToolName, server: ServerMajor | Promise<ServerMajor>, pgBinDir?: string): Promise<ToolPick> {
  const copies = await installedCopies(name, pgBinDir, process.env)
  let chosen: Promise<PgTool> | undefined
  return {likely: likelyCopy(copies), choose: () => (chosen ??= fittingTool(name, copies, server))}
}

/** Pure: the copy pickTool picks unless it is too old for the server, when no version can change that: the only real binary. */
export function likelyCopy(copies: readonly InstalledCopy[]): string | undefined {
  const real = copies.filter((copy) => !copy.wrapper)
  return real.length === 1 ? real[0].file : undefined
}

async function fittingTool(name: PgToolName, copies: InstalledCopy[], server: ServerMajor | Promise<ServerMajor>): Promise<PgTool> {
  const tools = await rankTools(name, copies, async (realBinaries) => {
    const {major} = await server
    return realBinaries.some((tool) => tool.major >= major)
  })
  const {major, version} = await server
  const fit = tools.find((tool) => tool.major >= major)
  if (fit) return fit
  const list = tools.length > 0 ? tools.map((t) => `${t.path} (${t.version})`).join(', ') : 'none'
  throw new TwDbError('E_PG_TOOL', `no ${name} can handle PostgreSQL ${version}: it needs ${name} ${major} or newer; found: ${list}`, {
    hint: `Install the PostgreSQL ${major} client (Debian/Ubuntu: apt-get install postgresql-client-${major} from apt.postgresql.org; macOS: brew install postgresql@${major}), then point tools.pg_bin_dir or PG_BIN_DIR at its bin directory if it is not on PATH.`,
  })
}

/** libpq environment for a child: connection settings and the password, never in argv. */
export function toolEnv(connection: ConnectionConfig, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  // Drop inherited libpq settings so that nothing but this connection is used.
  for (const [key, value] of Object.entries(base)) if (!key.startsWith('PG')) env[key] = value
  Object.assign(env, {
    PGHOST: connection.socketPath ?? connection.host,
    PGPORT: String(connection.port),
    PGUSER: connection.user,
    PGDATABASE: connection.database,
    PGSSLMODE: connection.ssl,
    PGAPPNAME: APPLICATION_NAME,
    PGCONNECT_TIMEOUT: String(Math.max(2, Math.round(connection.connectTimeout))),
  })
  if (connection.password !== undefined) env.PGPASSWORD = connection.password
  if (connection.sslRootCert) env.PGSSLROOTCERT = connection.sslRootCert
  return env
}

export function spawnTool(tool: Pick<PgTool, 'path'>, args: string[], connection: ConnectionConfig, stdio: StdioOptions): ChildProcess {
  return spawn(tool.path, args, {env: toolEnv(connection), stdio, shell: false})
}

export interface ToolExit {
  code: number | null
  signal: NodeJS.Signals | null
  /** The tool's stderr (its own messages), kept in full up to a limit. */
  stderr: string
}

/**
 * Waits for a child started with a piped stderr, keeping what it printed there.
 * An abort (Ctrl-C) stops the child with SIGTERM, at once if it came already:
 * a killed pg_restore or psql leaves its transaction to be rolled back.
 */
export function waitForTool(child: ChildProcess, signal?: AbortSignal): Promise<ToolExit> {
  let stderr = ''
  child.stderr?.on('data', (chunk: Buffer) => {
    if (stderr.length < 64 * 1024) stderr += chunk.toString()
  })
  const stop = () => child.kill('SIGTERM')
  if (signal?.aborted) stop()
  else signal?.addEventListener('abort', stop, {once: true})
  return new Promise<ToolExit>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', (code, exitSignal) => resolve({code, signal: exitSignal, stderr: stderr.trim()}))
  }).finally(() => signal?.removeEventListener('abort', stop))
}

/** One line for a tool that failed: its exit status and what it said. */
export function describeToolFailure(tool: PgTool, exit: ToolExit): string {
  const status = exit.signal ? `was killed by ${exit.signal}` : `exited with status ${exit.code}`
  const said = exit.stderr ? `: ${exit.stderr.split('\n').filter(Boolean).slice(-3).join(' | ')}` : ''
  return `${tool.name} ${tool.version} ${status}${said}`
}
