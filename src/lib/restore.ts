/**
 * `restore`: all or nothing. Plain dumps go through
 * `psql -X -v ON_ERROR_STOP=1 --single-transaction` (their own BEGIN and
 * COMMIT commented out), archives through
 * `pg_restore --single-transaction --exit-on-error`. With --clean the reset
 * and the restore run in one psql transaction, so a failed restore leaves
 * the old database in place.
 */
import {createReadStream, createWriteStream} from 'node:fs'
import {mkdtemp, open, readFile, rm, stat} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {once} from 'node:events'
import type {Writable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {createGunzip} from 'node:zlib'

import type {ConnectionConfig} from './config.js'
import {reserveSession, type Sql} from './connection.js'
import {DumpScriptError, TransactionControlFilter, parseDumpScript} from './dump-script.js'
import {EXIT, TwDbError, isPgError, sessionSurvives} from './errors.js'
import {describeToolFailure, findTools, spawnTool, waitForTool, type PgTool, type PgToolName} from './pgtools.js'
import {catalogSnapshot, resetScript, userRelationCount} from './reset.js'

export type DumpFormat = 'custom' | 'directory' | 'tar' | 'gzip' | 'plain'

/** The line pg_dump writes last in a plain dump; without it the dump was cut short. */
export const DUMP_COMPLETE_LINE = '-- PostgreSQL database dump complete'

/** Pure: the format of a dump from its first bytes (at least 512 for tar). */
export function detectFormat(head: Uint8Array): Exclude<DumpFormat, 'directory'> {
  const text = Buffer.from(head)
  if (text.subarray(0, 5).toString('latin1') === 'PGDMP') return 'custom'
  if (text[0] === 0x1f && text[1] === 0x8b) return 'gzip'
  if (text.subarray(257, 262).toString('latin1') === 'ustar') return 'tar'
  return 'plain'
}

/** Pure: whether the end of a plain dump holds pg_dump's closing line. */
export function isCompletePlainDump(tail: string): boolean {
  return tail.includes(DUMP_COMPLETE_LINE)
}

export interface RestoreOptions {
  /** A file or directory path; '-' or undefined reads stdin. */
  source?: string
  clean?: boolean
  force?: boolean
  pgBinDir?: string
  stdin?: NodeJS.ReadableStream
  /** Aborting (Ctrl-C) stops psql or pg_restore: the restore's transaction rolls back. */
  signal?: AbortSignal
}

export interface RestoreResult {
  format: DumpFormat
  source: string
  durationMs: number
}

export async function restore(sql: Sql, connection: ConnectionConfig, options: RestoreOptions): Promise<RestoreResult> {
  const started = performance.now()
  const work = await mkdtemp(path.join(tmpdir(), 'tw-db-restore-'))
  try {
    const input = await prepareInput(options, work)
    const tool = lookAhead(toolsNeeded(input, connection, options), options.pgBinDir)
    if (input.format === 'plain' && !options.force && !isCompletePlainDump(await readTail(input.path))) {
      throw new TwDbError('E_TRUNCATED', `${input.label} is truncated: it lacks pg_dump's closing line "${DUMP_COMPLETE_LINE}"`, {
        hint: 'The backup was cut short (a failed or interrupted pg_dump): use a complete one. --force restores it anyway.',
      })
    }

    if (!options.clean) {
      const relations = await userRelationCount(sql)
      if (relations > 0) {
        throw new TwDbError('E_NOT_EMPTY', `the target database ${connection.database} is not empty (${relations} user tables, views or sequences); nothing was restored`, {
          exit: EXIT.USAGE,
          hint: 'Restore into an empty database, or pass --clean to drop everything in it first (in the same transaction as the restore).',
        })
      }
    }

    throwIfInterrupted(options.signal)
    if (connection.embedded) {
      const script = input.format === 'plain' ? input.path : await archiveToScript(await tool('pg_restore'), input, connection, work, options)
      await restoreIntoEmbedded(sql, connection.embedded.dataDir, script, options)
    } else if (options.clean) {
      const {snapshot, currentUser} = await catalogSnapshot(sql)
      const plainPath = input.format === 'plain' ? input.path : await archiveToScript(await tool('pg_restore'), input, connection, work, options)
      await runPsql(await tool('psql'), plainPath, connection, options, resetScript(snapshot, currentUser))
    } else if (input.format === 'plain') {
      await runPsql(await tool('psql'), input.path, connection, options)
    } else {
      await runPgRestore(await tool('pg_restore'), input, connection, options)
    }
    return {format: input.originalFormat, source: input.label, durationMs: Math.round(performance.now() - started)}
  } finally {
    await rm(work, {recursive: true, force: true})
  }
}

interface PreparedInput {
  /** A file or directory pg_restore/psql can read (a spooled or decompressed copy if needed). */
  path: string
  format: Exclude<DumpFormat, 'gzip'>
  originalFormat: DumpFormat
  label: string
}

async function prepareInput(options: RestoreOptions, work: string): Promise<PreparedInput> {
  let file: string
  let label: string
  if (options.source === undefined || options.source === '-') {
    // stdin is spooled to a private file first: the dump must be checked whole before anything is touched.
    file = path.join(work, 'stdin.dump')
    await pipeline(options.stdin ?? process.stdin, createWriteStream(file, {mode: 0o600}), {signal: options.signal}).catch((error: unknown) => {
      throwIfInterrupted(options.signal)
      throw error
    })
    label = 'standard input'
  } else {
    file = path.resolve(options.source)
    label = options.source
    const info = await stat(file).catch(() => undefined)
    if (!info) throw new TwDbError('E_USAGE', `backup file not found: ${options.source}`, {exit: EXIT.USAGE})
    if (info.isDirectory()) {
      const toc = await stat(path.join(file, 'toc.dat')).catch(() => undefined)
      if (!toc) throw new TwDbError('E_USAGE', `${options.source} is a directory but not a pg_dump directory-format backup (no toc.dat)`, {exit: EXIT.USAGE})
      return {path: file, format: 'directory', originalFormat: 'directory', label}
    }
  }
  const format = detectFormat(await readHead(file))
  if (format !== 'gzip') return {path: file, format, originalFormat: format, label}
  const plain = path.join(work, 'decompressed.sql')
  try {
    await pipeline(createReadStream(file), createGunzip(), createWriteStream(plain, {mode: 0o600}))
  } catch (error) {
    throw new TwDbError('E_TRUNCATED', `${label} is not a valid gzip file: ${(error as Error).message}`, {
      hint: 'The compressed backup is damaged or was cut short.',
    })
  }
  return {path: plain, format: 'plain', originalFormat: 'gzip', label}
}

async function readHead(file: string): Promise<Buffer> {
  const handle = await open(file, 'r')
  try {
    const buffer = Buffer.alloc(512)
    const {bytesRead} = await handle.read(buffer, 0, 512, 0)
    return buffer.subarray(0, bytesRead)
  } finally {
    await handle.close()
  }
}

async function readTail(file: string): Promise<string> {
  const handle = await open(file, 'r')
  try {
    const {size} = await handle.stat()
    const length = Math.min(size, 4096)
    const buffer = Buffer.alloc(length)
    await handle.read(buffer, 0, length, size - length)
    return buffer.toString('utf8')
  } finally {
    await handle.close()
  }
}

/** The client programs a restore of `input` runs: psql for a plain script, pg_restore to read an archive. */
function toolsNeeded(input: PreparedInput, connection: ConnectionConfig, options: RestoreOptions): PgToolName[] {
  const needed: PgToolName[] = []
  if (input.format !== 'plain') needed.push('pg_restore')
  if (!connection.embedded && (options.clean || input.format === 'plain')) needed.push('psql')
  return needed
}

/**
 * Starts looking for each tool at once, so that asking every installed copy
 * its version (a process start each, 20-35 ms here) overlaps the checks of the
 * dump and the database. Returns the lookup of a tool by name: a tool that is
 * not found fails where it is awaited, after those checks, as if it had been
 * looked for then.
 */
function lookAhead(names: readonly PgToolName[], pgBinDir?: string): (name: PgToolName) => Promise<PgTool> {
  const early = new Map<PgToolName, Promise<PgTool>>()
  for (const name of names) {
    const found = newestTool(name, pgBinDir)
    // Awaited where the tool is used, or never when a check fails first: until then, not unhandled.
    found.catch(() => undefined)
    early.set(name, found)
  }
  return (name) => early.get(name) ?? newestTool(name, pgBinDir)
}

async function newestTool(name: PgToolName, pgBinDir?: string): Promise<PgTool> {
  const [tool] = await findTools(name, pgBinDir)
  if (!tool) {
    throw new TwDbError('E_PG_TOOL', `${name} was not found`, {
      hint: 'Install the PostgreSQL client (Debian/Ubuntu: apt-get install postgresql-client), or set tools.pg_bin_dir / PG_BIN_DIR.',
    })
  }
  return tool
}

/**
 * psql in one transaction, stopping at the first error; `prelude` runs first,
 * in the same transaction. The script reaches psql through
 * TransactionControlFilter, so that its own BEGIN and COMMIT cannot end that
 * transaction halfway.
 */
async function runPsql(psql: PgTool, file: string, connection: ConnectionConfig, options: RestoreOptions, prelude?: string): Promise<void> {
  const args = ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '--single-transaction', '--no-password']
  if (prelude) args.push('-c', prelude)
  args.push('-f', '-')
  const child = spawnTool(psql, args, connection, ['pipe', 'ignore', 'pipe'])
  // psql stops reading at its first error: what it did not read is no failure of its own.
  const feeding = feedScript(file, child.stdin!).then(
    () => undefined,
    (error: unknown) => error,
  )
  const exit = await waitForTool(child, options.signal)
  const fed = await feeding
  throwIfInterrupted(options.signal)
  if (exit.code !== 0) throw restoreFailed(psql, exit)
  if (fed) throw fed
}

const SCRIPT_CHUNK_BYTES = 256 * 1024

/**
 * Streams a plain script into psql through TransactionControlFilter, reading
 * into two buffers used in turn: a buffer is read into again only once what
 * was written from it has gone to the pipe. Streams would allocate a buffer
 * for every chunk, and tens of MB of them wait for the garbage collector
 * (a 559 MB dump took tw-db from 53 to 96 MB of RSS that way).
 */
async function feedScript(file: string, sink: Writable): Promise<void> {
  // A write psql will not read (it has stopped) fails through its callback; the event must not go unheard.
  sink.on('error', () => undefined)
  const filter = new TransactionControlFilter()
  const buffers = [Buffer.allocUnsafe(SCRIPT_CHUNK_BYTES), Buffer.allocUnsafe(SCRIPT_CHUNK_BYTES)]
  const written: Array<Promise<void>> = [Promise.resolve(), Promise.resolve()]
  const handle = await open(file, 'r')
  try {
    for (let turn = 0; ; turn ^= 1) {
      await written[turn]
      const {bytesRead} = await handle.read(buffers[turn], 0, SCRIPT_CHUNK_BYTES, null)
      if (bytesRead === 0) {
        await written[turn ^ 1]
        await writeAll(sink, filter.end())
        break
      }
      written[turn] = writeAll(sink, filter.push(buffers[turn].subarray(0, bytesRead)))
      // Awaited when this buffer's turn comes again: until then, a failure must not count as unhandled.
      written[turn].catch(() => undefined)
    }
    await new Promise<void>((resolve, reject) => sink.end((error?: Error | null) => (error ? reject(error) : resolve())))
  } finally {
    await handle.close()
  }
}

/** Writes every piece, waiting for the pipe to drain; resolves once all are written, rejects with the first failure. */
async function writeAll(sink: Writable, pieces: readonly Buffer[]): Promise<void> {
  const writes: Array<Promise<void>> = []
  try {
    for (const piece of pieces) {
      const write = new Promise<void>((resolve, reject) => sink.write(piece, (error) => (error ? reject(error) : resolve())))
      // Awaited below with the others: until then, a failure must not count as unhandled.
      write.catch(() => undefined)
      writes.push(write)
      if (sink.writableNeedDrain) await Promise.race([once(sink, 'drain'), write])
    }
  } finally {
    await Promise.all(writes)
  }
}

async function runPgRestore(pgRestore: PgTool, input: PreparedInput, connection: ConnectionConfig, options: RestoreOptions): Promise<void> {
  const args = ['--single-transaction', '--exit-on-error', '--no-password', '--dbname', `dbname='${connection.database.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`, input.path]
  const exit = await waitForTool(spawnTool(pgRestore, args, connection, ['ignore', 'ignore', 'pipe']), options.signal)
  throwIfInterrupted(options.signal)
  if (exit.code !== 0) throw restoreFailed(pgRestore, exit)
}

/** An archive as a plain SQL script, so that psql can run it after the reset in one transaction. */
async function archiveToScript(pgRestore: PgTool, input: PreparedInput, connection: ConnectionConfig, work: string, options: RestoreOptions): Promise<string> {
  const script = path.join(work, 'archive.sql')
  const exit = await waitForTool(spawnTool(pgRestore, ['--file', script, input.path], connection, ['ignore', 'ignore', 'pipe']), options.signal)
  throwIfInterrupted(options.signal)
  if (exit.code !== 0) throw restoreFailed(pgRestore, exit)
  return script
}

/**
 * The embedded database has no psql: run the plain script's statements here,
 * in one transaction. COPY data goes straight to PGlite, whose wire protocol
 * does not carry COPY FROM STDIN; it is the same session, so the same transaction.
 */
async function restoreIntoEmbedded(sql: Sql, dataDir: string, script: string, options: RestoreOptions): Promise<void> {
  let steps
  try {
    steps = parseDumpScript(await readFile(script, 'utf8'))
  } catch (error) {
    if (!(error instanceof DumpScriptError)) throw error
    throw new TwDbError('E_RESTORE_FAILED', `restore failed at line ${error.line}: ${error.message}`, {hint: 'Nothing was restored.'})
  }
  const {runningEmbedded, restoreSessionDefaults} = await import('./embedded.js')
  const {pglite} = await runningEmbedded(dataDir)
  const reserved = await reserveSession(sql)
  let line = 0
  try {
    await reserved`begin`
    if (options.clean) {
      const {snapshot, currentUser} = await catalogSnapshot(reserved)
      await reserved.unsafe(resetScript(snapshot, currentUser))
    }
    for (const step of steps) {
      throwIfInterrupted(options.signal)
      line = step.line
      if (step.kind === 'sql') await reserved.unsafe(step.sql, [], {prepare: false})
      else await pglite.query(step.sql.replace(/\bfrom\s+stdin\b/i, "from '/dev/blob'"), [], {blob: new Blob([step.data])})
    }
    await reserved`commit`
  } catch (error) {
    if (sessionSurvives(error)) await reserved`rollback`.catch(() => undefined)
    if (error instanceof TwDbError) throw error
    const reason = isPgError(error) ? `${error.message} (SQLSTATE ${error.code})` : (error as Error).message
    throw new TwDbError('E_RESTORE_FAILED', `restore failed${line ? ` at line ${line}` : ''}: ${reason}`, {
      hint: 'The restore ran in one transaction and was rolled back: the database is as it was before.',
      cause: error,
    })
  } finally {
    // The dump's SET commands changed the one session every connection shares.
    await restoreSessionDefaults(pglite)
    reserved.release()
  }
}

/** A Ctrl-C: whatever ran is rolled back (a killed psql or pg_restore takes its transaction with it). */
function throwIfInterrupted(signal?: AbortSignal): void {
  if (signal?.aborted) {
    throw new TwDbError('E_INTERRUPTED', 'restore interrupted: nothing was restored', {
      hint: 'The restore runs in one transaction, which was rolled back: the database is as it was before.',
    })
  }
}

function restoreFailed(tool: PgTool, exit: Awaited<ReturnType<typeof waitForTool>>): TwDbError {
  return new TwDbError('E_RESTORE_FAILED', `restore failed: ${describeToolFailure(tool, exit)}`, {
    hint: 'The restore ran in one transaction and was rolled back: the database is as it was before.',
  })
}
