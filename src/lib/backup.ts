/**
 * `backup`: pg_dump, streamed, never buffered. A file target is written to a
 * temporary path beside it (mode 0600), fsynced and renamed only once pg_dump
 * has succeeded, so FILE is either a complete backup or not there at all.
 */
import type {ChildProcess} from 'node:child_process'
import {open, readdir, rename, rm, stat, type FileHandle} from 'node:fs/promises'
import path from 'node:path'

import type {ConnectionConfig} from './config.js'
import {serverVersion, type Sql} from './connection.js'
import {TwDbError, usageError} from './errors.js'
import {readLedger} from './ledger.js'
import {processExists} from './pids.js'
import {describeToolFailure, pickTool, spawnTool, waitForTool, type PgTool, type ToolExit, type ToolPick} from './pgtools.js'

export const BACKUP_FORMATS = ['plain', 'custom', 'directory', 'tar'] as const
export type BackupFormat = (typeof BACKUP_FORMATS)[number]

export interface BackupOptions {
  format: BackupFormat
  /** A file (or directory, for the directory format); undefined streams to stdout. */
  output?: string
  schemaOnly?: boolean
  dataOnly?: boolean
  tables?: readonly string[]
  compress?: number
  pgBinDir?: string
  /** Called with the bytes written so far, about four times a second, when given. */
  onProgress?: (bytes: number) => void
  /** Aborting kills pg_dump and removes the partial output. */
  signal?: AbortSignal
  /** Told, in one line, what an earlier run left behind that this one removed. */
  onNotice?: (message: string) => void
}

export interface BackupResult {
  format: BackupFormat
  output: string | null
  /** null when pg_dump streamed straight to stdout and nothing counted the bytes. */
  bytes: number | null
  durationMs: number
  lastMigration: string | null
  serverVersion: string
  pgDump: {path: string; version: string}
}

export function pgDumpArgs(options: BackupOptions): string[] {
  if (options.schemaOnly && options.dataOnly) throw usageError('--schema-only and --data-only cannot be used together')
  if (options.format === 'tar' && options.compress) {
    throw usageError('-F tar cannot be compressed: pg_dump writes tar archives as they are', 'Drop -Z, or use -F custom, which is compressed by default.')
  }
  const args = ['--format', options.format, '--no-password']
  if (options.schemaOnly) args.push('--schema-only')
  if (options.dataOnly) args.push('--data-only')
  for (const table of options.tables ?? []) args.push('--table', table)
  if (options.compress !== undefined) args.push('--compress', String(options.compress))
  return args
}

export async function backup(sql: Sql, connection: ConnectionConfig, options: BackupOptions): Promise<BackupResult> {
  const args = pgDumpArgs(options)
  if (options.format === 'directory' && !options.output) {
    throw usageError('the directory format needs --output DIR', 'Pass -o backup.dir, or use -F plain/custom/tar to stream.')
  }
  if (connection.embedded && (options.format !== 'plain' || options.compress !== undefined)) {
    throw usageError(
      "the embedded database's pg_dump writes uncompressed plain SQL only",
      'Drop -F/-Z; compress the output yourself if needed: tw-db backup | gzip > dump.sql.gz.',
    )
  }
  if (options.output && options.format !== 'directory' && (await stat(options.output).catch(() => undefined))?.isDirectory()) {
    throw usageError(`${options.output} is a directory`, 'Give -o a file name, or use -F directory to write the backup as a directory.')
  }
  if (options.output) {
    const stale = await removeStalePartials(path.resolve(options.output))
    if (stale.length > 0) options.onNotice?.(`Removed ${stale.length === 1 ? 'a partial backup' : 'partial backups'} left by a tw-db process that no longer runs: ${stale.join(', ')}`)
  }
  const serverAnswer = serverVersion(sql)
  // The server's version (to pick pg_dump, and for the summary) and the ledger (for the summary) are read while
  // pg_dump is found and started: runPgDump stops it if either read fails.
  const details = Promise.all([serverAnswer, readLedger(sql)])
  details.catch(() => undefined)
  throwIfInterrupted(options)
  const started = performance.now()
  const dumped = connection.embedded
    ? await dumpEmbedded(connection.embedded.dataDir, args, options, details)
    : await dumpWithClient(await pickTool('pg_dump', serverAnswer, options.pgBinDir), args, connection, options, details)
  const [server, ledger] = await details
  const lastMigration = (ledger?.rows ?? []).sort((a, b) => (a.appliedAt?.getTime() ?? 0) - (b.appliedAt?.getTime() ?? 0)).at(-1)?.id ?? null
  return {
    format: options.format,
    output: options.output ?? null,
    bytes: dumped.bytes,
    durationMs: Math.round(performance.now() - started),
    lastMigration,
    serverVersion: server.version,
    pgDump: dumped.pgDump,
  }
}

interface Dumped {
  bytes: number | null
  pgDump: BackupResult['pgDump']
}

/** The machine's pg_dump, as a child process writing straight to the file or stdout. */
async function dumpWithClient(pick: ToolPick, args: string[], connection: ConnectionConfig, options: BackupOptions, ready: Promise<unknown>): Promise<Dumped> {
  const run = {pick, ready, options}
  const bytes = options.output ? await dumpToPath(run, args, connection, options.output) : await dumpToStdout(run, args, connection)
  // The copy that ran: runPgDump runs no other.
  const pgDump = await pick.choose()
  return {bytes, pgDump: {path: pgDump.path, version: pgDump.version}}
}

async function dumpToStdout(run: PgDumpRun, args: string[], connection: ConnectionConfig): Promise<number | null> {
  // Without progress to show, pg_dump writes straight to our stdout: no copy through Node.
  const counting = Boolean(run.options.onProgress)
  let bytes = 0
  const start = (pgDump: Pick<PgTool, 'path'>) => {
    const child = spawnTool(pgDump, args, connection, ['ignore', counting ? 'pipe' : 'inherit', 'pipe'])
    if (counting) {
      child.stdout!.on('data', (chunk: Buffer) => (bytes += chunk.length))
      child.stdout!.pipe(process.stdout, {end: false})
    }
    return child
  }
  // A copy stopped at its version check has written nothing: there is nothing to discard.
  await runPgDump(run, start, () => bytes, async () => undefined)
  return counting ? bytes : null
}

async function dumpToPath(run: PgDumpRun, args: string[], connection: ConnectionConfig, output: string): Promise<number> {
  const target = path.resolve(output)
  const temp = partialPath(target)
  if (run.options.format === 'directory') {
    const existing = await stat(target).catch(() => undefined)
    if (existing) throw usageError(`${output} already exists`, 'The directory format needs a path that does not exist yet.')
    try {
      await runPgDump(
        run,
        (pgDump) => spawnTool(pgDump, [...args, '--file', temp], connection, ['ignore', 'ignore', 'pipe']),
        () => directorySize(temp).catch(() => 0),
        // pg_dump creates the directory before it connects.
        () => rm(temp, {recursive: true, force: true}),
      )
      await rename(temp, target)
      await fsyncDirectory(path.dirname(target))
      return directorySize(target)
    } catch (error) {
      await rm(temp, {recursive: true, force: true})
      throw error
    }
  }

  return writeFileAtomically(output, async (file) => {
    // pg_dump writes into the file itself: nothing is copied through Node; progress reads the file's size.
    const flushing = flushAsItGrows(file)
    await runPgDump(
      run,
      (pgDump) => spawnTool(pgDump, args, connection, ['ignore', file.fd, 'pipe']),
      () => file.stat().then((info) => info.size),
      () => file.truncate(0),
    ).finally(() => flushing.stop())
    // Only after pg_dump's own failure, which is the one to report.
    flushing.throwIfFailed()
  })
}

/**
 * Creates FILE only once `write` has filled a private temporary file beside
 * it (mode 0600), fsynced; on any failure the temporary file is removed and
 * FILE is untouched. Returns the size written.
 */
async function writeFileAtomically(output: string, write: (file: FileHandle) => Promise<void>): Promise<number> {
  const target = path.resolve(output)
  const temp = partialPath(target)
  let file: FileHandle | undefined
  try {
    file = await open(temp, 'wx', 0o600)
  } catch (error) {
    throw new TwDbError('E_BACKUP_FAILED', `cannot write ${output}: ${(error as Error).message}`, {
      exit: 2,
      hint: 'Check that the directory exists and is writable.',
    })
  }
  try {
    await write(file)
    await file.sync()
    await file.close()
    file = undefined
    await rename(temp, target)
    await fsyncDirectory(path.dirname(target))
    return (await stat(target)).size
  } catch (error) {
    await file?.close().catch(() => undefined)
    await rm(temp, {force: true})
    throw error
  }
}

function partialPath(target: string): string {
  return path.join(path.dirname(target), partialName(path.basename(target), process.pid))
}

/**
 * The embedded database is dumped by pglite-tools' pg_dump (WebAssembly, in
 * this process), which needs no PostgreSQL client but writes plain SQL only
 * and hands the whole dump back at once: fine for the small databases PGlite holds.
 */
async function dumpEmbedded(dataDir: string, args: string[], options: BackupOptions, ready: Promise<unknown>): Promise<Dumped> {
  await ready
  throwIfInterrupted(options)
  const [{runningEmbedded}, {pgDump}] = await Promise.all([import('./embedded.js'), import('@electric-sql/pglite-tools/pg_dump')])
  const {pglite} = await runningEmbedded(dataDir)
  let dump: Buffer
  try {
    dump = Buffer.from(await (await pgDump({pg: pglite, args})).arrayBuffer())
  } catch (error) {
    throw new TwDbError('E_BACKUP_FAILED', `backup failed: pg_dump (pglite-tools) ${(error as Error).message.split('\n')[0]}`, {
      hint: options.output ? `Nothing was written to ${options.output}.` : 'Nothing was written to stdout.',
    })
  } finally {
    // pglite-tools' pg_dump leaves its read-only transaction open in the one session every
    // connection shares: whatever came next (reset --backup's DROP SCHEMA) would run inside it.
    if (pglite.isInTransaction()) await pglite.exec('rollback')
  }
  throwIfInterrupted(options)
  const version = /^-- Dumped by pg_dump version (.+)$/m.exec(dump.subarray(0, 4096).toString('utf8'))?.[1] ?? 'unknown'
  const tool = {path: '@electric-sql/pglite-tools', version}
  if (!options.output) {
    await new Promise<void>((resolve, reject) => process.stdout.write(dump, (error) => (error ? reject(error) : resolve())))
    return {bytes: dump.length, pgDump: tool}
  }
  const bytes = await writeFileAtomically(options.output, async (file) => {
    await file.writeFile(dump)
  })
  return {bytes, pgDump: tool}
}

/** The temporary name beside the target while process `pid` writes a backup to `basename`. */
export function partialName(basename: string, pid: number): string {
  return `.${basename}.tw-db-${pid}.partial`
}

/** The pid in `name` when it is partialName(basename, pid), else undefined. */
export function partialPid(name: string, basename: string): number | undefined {
  const prefix = `.${basename}.tw-db-`
  const suffix = '.partial'
  if (!name.startsWith(prefix) || !name.endsWith(suffix)) return undefined
  const digits = name.slice(prefix.length, name.length - suffix.length)
  // Linux pids stay below 2^22; ten digits keep process.kill() from rejecting the number.
  return /^[1-9]\d{0,9}$/.test(digits) ? Number(digits) : undefined
}

/**
 * Removes the temporary files (or directories) beside `target` of backups whose
 * process is gone: a tw-db killed with SIGKILL cannot clean up after itself.
 * Partials of live processes (EPERM counts as alive) are left alone, and so is
 * one with our own pid: it may be a writer in another pid namespace (a container
 * sharing the directory), which would then rename our partial onto the target.
 * A writer with another pid there only loses its partial: its rename then fails.
 */
async function removeStalePartials(target: string): Promise<string[]> {
  const dir = path.dirname(target)
  const removed: string[] = []
  for (const name of await readdir(dir).catch(() => [])) {
    const pid = partialPid(name, path.basename(target))
    if (pid === undefined || pid === process.pid || processExists(pid)) continue
    const stale = path.join(dir, name)
    // Housekeeping only: a partial we cannot remove must not fail the backup.
    await rm(stale, {recursive: true, force: true}).then(() => removed.push(stale), () => undefined)
  }
  return removed
}

interface PgDumpRun {
  pick: ToolPick
  /** What must also succeed for the backup to go on (the reads for its summary). */
  ready: Promise<unknown>
  options: BackupOptions
}

/**
 * Runs pg_dump until it has succeeded. The likely copy (ToolPick) starts
 * first; it and the server are asked their versions, and `ready` settles,
 * while it runs. Should the pick turn out to be another copy (the likely one
 * too old for the server: it then stops at its own version check, before it
 * has dumped anything), the likely one is stopped, `discard` removes what it
 * may have created, and the picked copy runs. If no copy fits, or `ready`
 * fails, the likely one is stopped and that error thrown.
 */
async function runPgDump(
  {pick, ready, options}: PgDumpRun,
  start: (pgDump: Pick<PgTool, 'path'>) => ChildProcess,
  bytesSoFar: () => number | Promise<number>,
  discard: () => Promise<void>,
): Promise<void> {
  const early = pick.likely === undefined ? undefined : watched(start({path: pick.likely}), options, bytesSoFar)
  let pgDump: PgTool
  try {
    ;[pgDump] = await Promise.all([pick.choose(), ready])
  } catch (error) {
    await early?.stop()
    throw error
  }
  let exit: ToolExit
  if (early && pgDump.path === pick.likely) {
    exit = await early.exit
  } else {
    if (early) {
      await early.stop()
      await discard()
    }
    exit = await runWatched(start(pgDump), options, bytesSoFar)
  }
  if (exit.code !== 0) throw dumpFailed(pgDump, exit, options)
}

/** A started pg_dump, its exit awaited later (until then a failure must not count as unhandled), and how to stop it. */
function watched(child: ChildProcess, options: BackupOptions, bytesSoFar: () => number | Promise<number>) {
  const exit = runWatched(child, options, bytesSoFar)
  exit.catch(() => undefined)
  return {
    exit,
    stop: async () => {
      child.kill('SIGTERM')
      await exit.catch(() => undefined)
    },
  }
}

/** Waits for pg_dump, reporting progress and honouring the abort signal. */
async function runWatched(child: ReturnType<typeof spawnTool>, options: BackupOptions, bytesSoFar: () => number | Promise<number>) {
  const report = options.onProgress
  report?.(0)
  const timer = report ? setInterval(() => void Promise.resolve(bytesSoFar()).then(report, () => undefined), 250) : undefined
  try {
    return await waitForTool(child, options.signal)
  } finally {
    if (timer) clearInterval(timer)
  }
}

function dumpFailed(pgDump: PgTool, exit: Awaited<ReturnType<typeof waitForTool>>, options: BackupOptions): TwDbError {
  if (options.signal?.aborted) return interruptedError(options)
  return new TwDbError('E_BACKUP_FAILED', `backup failed: ${describeToolFailure(pgDump, exit)}`, {
    hint: options.output ? `Nothing was written to ${options.output}.` : 'The output on stdout is incomplete: discard it.',
  })
}

function interruptedError(options: BackupOptions): TwDbError {
  return new TwDbError('E_INTERRUPTED', 'backup interrupted: pg_dump was stopped or never started', {
    hint: options.output ? `Nothing was written to ${options.output}.` : 'The output on stdout is incomplete: discard it.',
  })
}

/** A Ctrl-C that came while tw-db was getting ready, or while the embedded database dumped: stop here. */
function throwIfInterrupted(options: BackupOptions): void {
  if (options.signal?.aborted) throw interruptedError(options)
}

/** How much a file being written may grow between two flushes to disk. */
const FLUSH_EVERY_BYTES = 64 * 1024 * 1024

/**
 * Flushes a file that pg_dump is filling each time it has grown by
 * FLUSH_EVERY_BYTES: the disk is otherwise idle while pg_dump waits on the
 * server, and the fsync at the end then has little left to write (it took
 * about 0.25 s for a 586 MB dump here, bench/README.md). `stop` waits for a
 * flush in flight; `throwIfFailed` then throws the first flush error: once
 * one fsync has reported a write error, Linux does not report it to the next.
 */
function flushAsItGrows(file: FileHandle): {stop: () => Promise<void>; throwIfFailed: () => void} {
  let flushedBytes = 0
  let inFlight: Promise<void> | undefined
  let failure: unknown
  const timer = setInterval(() => {
    if (inFlight || failure) return
    inFlight = file
      .stat()
      .then(async ({size}) => {
        if (size - flushedBytes < FLUSH_EVERY_BYTES) return
        await file.datasync()
        flushedBytes = size
      })
      .catch((error: unknown) => {
        failure = error
      })
      .finally(() => (inFlight = undefined))
  }, 100)
  return {
    async stop() {
      clearInterval(timer)
      await inFlight
    },
    throwIfFailed() {
      if (failure) throw failure
    },
  }
}

async function fsyncDirectory(dir: string): Promise<void> {
  const handle = await open(dir, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

async function directorySize(dir: string): Promise<number> {
  let total = 0
  for (const entry of await readdir(dir)) total += (await stat(path.join(dir, entry))).size
  return total
}
