/**
 * What every benchmark section shares: paths, running and timing processes
 * (with their peak RSS), interleaved runs, medians, throwaway databases and
 * the result table. Progress goes to stderr; only the table goes to stdout.
 */
import {spawn} from 'node:child_process'
import {closeSync, mkdirSync, openSync, readFileSync, readdirSync, writeFileSync} from 'node:fs'
import {readFile, readdir} from 'node:fs/promises'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import postgres from 'postgres'

import type {TestServer} from '../test/support/postgres.js'

export const ROOT = fileURLToPath(new URL('../', import.meta.url))
export const BIN = path.join(ROOT, 'bin', 'run.js')
export const NODE = process.execPath
/** The npm packages' own entry points, run with node as `npx dbmate` / `npx node-pg-migrate` would. */
/** dbmate's Go binary (npm package @dbmate/linux-x64), run directly. */
export const DBMATE = path.join(ROOT, 'node_modules', '@dbmate', 'linux-x64', 'bin', 'dbmate')
export const NODE_PG_MIGRATE = path.join(ROOT, 'node_modules', 'node-pg-migrate', 'bin', 'node-pg-migrate.js')

/**
 * The newest PostgreSQL client installed by the OS (/usr/lib/postgresql/N/bin). Its real binaries, not
 * Debian's Perl wrappers in /usr/bin: they are what tw-db itself picks, and the wrapper would add ~30 ms.
 */
export const PG_CLIENT_MAJOR = Math.max(
  ...readdirSync('/usr/lib/postgresql')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number),
)
export function pgTool(name: 'psql' | 'pg_dump' | 'pgbench'): string {
  return path.join('/usr/lib/postgresql', String(PG_CLIENT_MAJOR), 'bin', name)
}

// ---------------------------------------------------------------- scale

export const SECTIONS = ['startup', 'migrations', 'khronos', 'backup'] as const
export type Section = (typeof SECTIONS)[number]

export interface Scale {
  name: 'quick' | 'full'
  khronosRows: number
  pgbenchScale: number
  /** Timed runs per section (after one untimed warm-up run for start-up). */
  runs: Record<Section, number>
}

export function readScale(env: NodeJS.ProcessEnv = process.env): Scale {
  const quick = env.BENCH_SCALE === 'quick'
  const scale: Scale = quick
    ? {name: 'quick', khronosRows: 100_000, pgbenchScale: 6, runs: {startup: 10, migrations: 3, khronos: 3, backup: 3}}
    : {name: 'full', khronosRows: 1_000_000, pgbenchScale: 60, runs: {startup: 15, migrations: 5, khronos: 3, backup: 3}}
  const runs = Number(env.BENCH_RUNS)
  if (Number.isInteger(runs) && runs > 0) for (const section of SECTIONS) scale.runs[section] = runs
  return scale
}

export function selectedSections(env: NodeJS.ProcessEnv = process.env): Section[] {
  if (!env.BENCH_ONLY) return [...SECTIONS]
  const wanted = env.BENCH_ONLY.split(',').map((s) => s.trim())
  const unknown = wanted.filter((s) => !(SECTIONS as readonly string[]).includes(s))
  if (unknown.length > 0) throw new Error(`BENCH_ONLY: unknown section(s) ${unknown.join(', ')}; known: ${SECTIONS.join(', ')}`)
  return SECTIONS.filter((s) => wanted.includes(s))
}

export interface Context {
  server: TestServer
  scale: Scale
  /** A private temporary directory for fixtures and dumps, removed at the end. */
  work: string
}

// ---------------------------------------------------------------- processes

/** Peak resident set size (VmHWM) in kB: `self` for the process started, and each child by its name. */
export type PeakRss = Record<string, number>

export interface Run {
  /** Wall-clock time. */
  ms: number
  /** CPU time (user + system) of the processes run, or of this process for in-process work. */
  cpuMs: number
  rss?: PeakRss
}

export interface ProcessOptions {
  env?: NodeJS.ProcessEnv
  cwd?: string
  /** Send stdout to this file (e.g. /dev/null, or a dump); otherwise it is discarded. */
  stdout?: string
  /** Poll /proc for the peak RSS of the process and of its children. */
  watchRss?: boolean
}

/** Runs a command to completion; throws with the end of its stderr unless it exits 0. */
export async function runProcess(command: string, args: string[], options: ProcessOptions = {}): Promise<PeakRss | undefined> {
  const out = options.stdout ? openSync(options.stdout, 'w') : 'ignore'
  try {
    const child = spawn(command, args, {env: options.env ?? process.env, cwd: options.cwd, stdio: ['ignore', out, 'pipe']})
    let stderr = ''
    child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)))
    const watcher = options.watchRss && child.pid ? watchRss(child.pid) : undefined
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once('error', reject)
      child.once('close', resolve)
    })
    const rss = watcher?.stop()
    if (code !== 0) throw new Error(`${path.basename(command)} ${args.join(' ')} exited with ${code}:\n${stderr}`)
    return rss
  } finally {
    if (typeof out === 'number') closeSync(out)
  }
}

/**
 * Times `work` on the wall clock and in CPU time. Wall time is what a user
 * waits; CPU time barely moves when other jobs load the machine, so it shows
 * the cost of the work itself. Child processes are counted once reaped
 * (cutime/cstime, which include their own reaped children); `inProcess`
 * counts this process instead. A PeakRss that `work` returns is kept.
 */
export async function timed(work: () => Promise<PeakRss | void | undefined>, inProcess = false): Promise<Run> {
  const cpuBefore = cpuTicks(inProcess)
  const started = performance.now()
  const rss = await work()
  const ms = performance.now() - started
  return {ms, cpuMs: (cpuTicks(inProcess) - cpuBefore) * (1000 / CLOCK_TICKS), rss: rss ?? undefined}
}

export function timeProcess(command: string, args: string[], options: ProcessOptions = {}): Promise<Run> {
  return timed(() => runProcess(command, args, options))
}

/** USER_HZ: the unit of the times in /proc (`getconf CLK_TCK`, 100 on Linux). */
const CLOCK_TICKS = 100

/** utime + stime of this process, or cutime + cstime of its reaped children, from /proc/self/stat. */
function cpuTicks(self: boolean): number {
  const stat = readFileSync('/proc/self/stat', 'utf8')
  // Fields after the parenthesised name, numbered from 3 (state): utime is 14, stime 15, cutime 16, cstime 17.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const [utime, stime, cutime, cstime] = fields.slice(11, 15).map(Number)
  return self ? utime + stime : cutime + cstime
}

/** The environment a user's shell would give tw-db: no DATABASE_URL, PG* or CI from ours, no colour. */
export function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {PATH: process.env.PATH, HOME: process.env.HOME, LANG: 'C.UTF-8', NO_COLOR: '1', ...extra}
}

const RSS_POLL_MS = 20

/**
 * VmHWM is the kernel's own high-water mark, so polling it misses nothing but
 * growth in the last poll interval before a process exits. Children are found
 * through /proc/PID/task/TID/children, so pg_dump and psql are reported apart.
 */
function watchRss(pid: number): {stop(): PeakRss} {
  const peaks: PeakRss = {}
  const record = async (target: number, key?: string) => {
    const status = await readFile(`/proc/${target}/status`, 'utf8').catch(() => '')
    const hwm = /^VmHWM:\s+(\d+) kB/m.exec(status)
    const name = key ?? /^Name:\s+(.*)$/m.exec(status)?.[1]
    if (hwm && name) peaks[name] = Math.max(peaks[name] ?? 0, Number(hwm[1]))
  }
  const poll = async () => {
    await record(pid, 'self')
    const tasks = await readdir(`/proc/${pid}/task`).catch(() => [] as string[])
    for (const task of tasks) {
      const children = await readFile(`/proc/${pid}/task/${task}/children`, 'utf8').catch(() => '')
      for (const child of children.split(' ').filter(Boolean)) {
        // tw-db asks every pg_dump/psql it finds for its --version: those are not the one doing the work.
        const argv = await readFile(`/proc/${child}/cmdline`, 'utf8').catch(() => '')
        if (!argv.split('\0').includes('--version')) await record(Number(child))
      }
    }
  }
  let stopped = false
  void (async () => {
    while (!stopped) {
      await poll()
      await new Promise((resolve) => setTimeout(resolve, RSS_POLL_MS))
    }
  })()
  return {
    stop() {
      stopped = true
      return peaks
    },
  }
}

// ---------------------------------------------------------------- runs

export interface Case {
  label: string
  /**
   * One timed run; any preparation (a fresh database) happens inside, outside
   * the timed part. `watchRss`: record the peak RSS of the processes it starts.
   */
  run: (watchRss: boolean) => Promise<Run>
  /** Measure peak memory too, in one more run after the timed ones. */
  memory?: boolean
}

export interface Series {
  label: string
  runs: Run[]
  /** From the extra run of a `memory` case. */
  rss?: PeakRss
}

/**
 * Runs every case `runs` times, interleaved (a, b, c, a, b, c, …) so that a
 * burst of load from elsewhere on the machine hits every case alike.
 */
export async function measure(section: string, cases: Case[], runs: number, warmups = 0): Promise<Series[]> {
  const series: Series[] = cases.map((c) => ({label: c.label, runs: []}))
  for (let round = 0; round < warmups + runs; round++) {
    for (const [index, c] of cases.entries()) {
      const run = await c.run(false)
      if (round < warmups) continue
      series[index].runs.push(run)
      progress(`[${section}] ${round - warmups + 1}/${runs} ${c.label}: ${formatMs(run.ms)} (CPU ${formatMs(run.cpuMs)})`)
    }
  }
  // Memory in runs of its own: reading /proc every RSS_POLL_MS takes CPU from the run it watches.
  for (const [index, c] of cases.entries()) {
    if (!c.memory) continue
    series[index].rss = (await c.run(true)).rss
    progress(`[${section}] memory ${c.label}: ${JSON.stringify(series[index].rss)}`)
  }
  return series
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const middle = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

export function medianMs(series: Series): number {
  return median(series.runs.map((r) => r.ms))
}

/** The fastest run: what the work costs when nothing else on the machine got in its way. */
export function bestMs(series: Series): number {
  return Math.min(...series.runs.map((r) => r.ms))
}

export function medianCpuMs(series: Series): number {
  return median(series.runs.map((r) => r.cpuMs))
}

/** Peak RSS (kB) of a `memory` case, for the process itself or a child by name. */
export function peakRssKb(series: Series, key = 'self'): number | undefined {
  return series.rss?.[key]
}

export function progress(message: string): void {
  process.stderr.write(`${message}\n`)
}

// ---------------------------------------------------------------- databases

/** Creates an empty database (or a copy of `template`) on the bench server; returns its name and URL. */
export async function createDatabase(server: TestServer, template?: string): Promise<{name: string; url: string}> {
  const name = `bench_${Math.random().toString(36).slice(2, 10)}`
  // FILE_COPY (15+) copies a large template's files instead of writing them all through the WAL.
  const copy = template ? ` template ${template}${server.major >= 15 ? ' strategy file_copy' : ''}` : ''
  await server.admin.unsafe(`create database ${name}${copy}`)
  return {name, url: databaseUrl(server, name)}
}

export async function dropDatabase(server: TestServer, name: string): Promise<void> {
  await server.admin.unsafe(`drop database if exists ${name} with (force)`)
}

export function databaseUrl(server: TestServer, name: string): string {
  return `postgres://postgres@${server.host}:${server.port}/${name}`
}

/** One query on its own short-lived connection; returns the first row. */
export async function queryOne<T extends object>(url: string, text: string): Promise<T> {
  const sql = postgres(url, {max: 1, onnotice: () => undefined})
  try {
    const [row] = await sql.unsafe<T[]>(text)
    return row
  } finally {
    await sql.end()
  }
}

/** Runs `work` against a fresh database (a copy of `template` if given) and drops it afterwards. */
export async function withDatabase<T>(server: TestServer, work: (db: {name: string; url: string}) => Promise<T>, template?: string): Promise<T> {
  const db = await createDatabase(server, template)
  try {
    return await work(db)
  } finally {
    await dropDatabase(server, db.name)
  }
}

// ---------------------------------------------------------------- results

/** A limit on a ratio (`x`) or on a size in MB. */
export interface Target {
  op: '<=' | '<'
  limit: number
  unit: 'x' | 'MB'
  /** Shown instead of the plain limit, e.g. "<= 0.25x (>= 4x rows/s)". */
  text?: string
}

export interface Row {
  section: string
  label: string
  /** Median wall-clock time (or a size), as shown. */
  value: string
  cpu?: string
  baseline?: string
  ratio?: number
  cpuRatio?: number
  /** The fastest run's time over the baseline's fastest: steadier than medians where stalls hit a share of all runs. */
  bestRatio?: number
  target?: Target
  /** What the target is checked against: the ratio, or a size in MB. */
  measured?: number
}

export function timeRow(section: string, series: Series, note = ''): Row {
  return {section, label: series.label, value: formatMs(medianMs(series)) + note, cpu: formatMs(medianCpuMs(series))}
}

/** subject's median time divided by the baseline's median time, measured in the same run. */
export function ratioRow(section: string, subject: Series, baseline: Series, target?: Target, note = ''): Row {
  const ratio = medianMs(subject) / medianMs(baseline)
  return {
    ...timeRow(section, subject, note),
    baseline: `${baseline.label} (${formatMs(medianMs(baseline))})`,
    ratio,
    cpuRatio: medianCpuMs(subject) / medianCpuMs(baseline),
    bestRatio: bestMs(subject) / bestMs(baseline),
    target,
    measured: ratio,
  }
}

/** The goal for tw-db's own node process in every command: stream, never buffer. */
export const RSS_TARGET: Target = {op: '<', limit: 100, unit: 'MB'}

export function rssRow(section: string, label: string, kb: number | undefined, target?: Target): Row {
  if (kb === undefined) return {section, label, value: 'n/a'}
  return {section, label, value: formatMb(kb), target, measured: kb / 1024}
}

function verdict(row: Row): string {
  if (!row.target || row.measured === undefined) return ''
  const {op, limit} = row.target
  const pass = op === '<=' ? row.measured <= limit : row.measured < limit
  return pass ? 'PASS' : 'MISS'
}

export function renderTable(rows: readonly Row[]): string {
  const header = ['Section', 'Measurement', 'Median', 'CPU', 'Baseline (median)', 'Ratio', 'CPU ratio', 'Best ratio', 'Target', 'Result']
  const times = (ratio?: number) => (ratio === undefined || !Number.isFinite(ratio) ? '' : `${ratio.toFixed(2)}x`)
  const lines = rows.map((row) => [
    row.section,
    row.label,
    row.value,
    row.cpu ?? '',
    row.baseline ?? '',
    times(row.ratio),
    times(row.cpuRatio),
    times(row.bestRatio),
    row.target ? (row.target.text ?? `${row.target.op} ${row.target.limit}${row.target.unit === 'x' ? 'x' : ' MB'}`) : '',
    verdict(row),
  ])
  const escape = (cell: string) => cell.replace(/\|/g, '\\|')
  return [header, header.map(() => '---'), ...lines].map((cells) => `| ${cells.map(escape).join(' | ')} |`).join('\n')
}

export function formatMs(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`
  return `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`
}

export function formatMb(kb: number): string {
  return `${(kb / 1024).toFixed(1)} MB`
}

export function formatRate(rows: number, ms: number): string {
  const perSecond = rows / (ms / 1000)
  return perSecond >= 1000 ? `${(perSecond / 1000).toFixed(1)}k rows/s` : `${Math.round(perSecond)} rows/s`
}

// ---------------------------------------------------------------- other tools' registries

/** A migration file in tw-db's format: `NNNN_<id>.sql` starting with `-- description: …`. */
export interface MigrationFile {
  name: string
  sql: string
}

export interface Registries {
  /** tw-db's directory; node-pg-migrate reads the same files (a .sql file without markers is all "up"). */
  twDb: string
  /** The same files with dbmate's `-- migrate:up` / `-- migrate:down` markers. */
  dbmate: string
  /** Absolute paths of the tw-db files, in order, for psql. */
  files: string[]
}

export function writeRegistries(dir: string, migrations: readonly MigrationFile[]): Registries {
  const twDb = path.join(dir, 'tw-db')
  const dbmate = path.join(dir, 'dbmate')
  mkdirSync(twDb, {recursive: true})
  mkdirSync(dbmate, {recursive: true})
  for (const {name, sql} of migrations) {
    writeFileSync(path.join(twDb, name), sql)
    writeFileSync(path.join(dbmate, name), `-- migrate:up\n${sql}\n-- migrate:down\n`)
  }
  return {twDb, dbmate, files: migrations.map(({name}) => path.join(twDb, name))}
}

/** dbmate's arguments; --no-dump-schema, or every `up` would also run pg_dump to write schema.sql. */
export function dbmateArgs(url: string, dir: string, command: 'up' | 'status'): string[] {
  return ['--url', `${url}?sslmode=disable`, '--migrations-dir', dir, '--no-dump-schema', command]
}

/**
 * node-pg-migrate's arguments. --no-single-transaction gives each migration
 * its own transaction, as tw-db, dbmate and psql -1 do (its default wraps the
 * whole run in one); --no-verbose stops it echoing every statement.
 */
export function nodePgMigrateArgs(dir: string, extra: string[] = []): string[] {
  return [NODE_PG_MIGRATE, 'up', '--migrations-dir', dir, '--no-single-transaction', '--no-verbose', ...extra]
}
