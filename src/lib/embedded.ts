import {linkSync, mkdirSync, readFileSync, readdirSync, statSync, unlinkSync, writeFileSync, type Stats} from 'node:fs'
import path from 'node:path'

import type {PGlite} from '@electric-sql/pglite'
import type {PGLiteSocketServer} from '@electric-sql/pglite-socket'

import {APPLICATION_NAME} from './connection.js'
import {EXIT, TwDbError} from './errors.js'
import {processExists} from './pids.js'

/**
 * The embedded database (SPEC.md section 7): PGlite running in this process,
 * served on a random 127.0.0.1 port so that every command still talks to it
 * through postgres.js and the wire protocol. This module is only ever loaded
 * through a dynamic import, so commands against a real server never pay for
 * PGlite's WebAssembly.
 */
export interface EmbeddedDatabase {
  readonly dataDir: string
  readonly host: string
  readonly port: number
  /** For the two things the wire protocol cannot carry: pg_dump and COPY FROM STDIN. */
  readonly pglite: PGlite
}

interface Running extends EmbeddedDatabase {
  server: PGLiteSocketServer
  users: number
  /** Lets go of the data directory's lock and of the signal handlers. */
  release: () => void
}

/** One instance per data directory and process, shared by every pool that points at it. */
const running = new Map<string, Promise<Running>>()

/** The embedded database's own login: PGlite has a single superuser and database. */
export const EMBEDDED_USER = 'postgres'
export const EMBEDDED_DATABASE = 'postgres'

/** Starts (or joins) the embedded database stored in `dataDir`. Pair each call with `releaseEmbedded`. */
export async function acquireEmbedded(dataDir: string): Promise<EmbeddedDatabase> {
  const key = path.resolve(dataDir)
  let starting = running.get(key)
  if (!starting) {
    starting = start(key)
    running.set(key, starting)
    starting.catch(() => running.delete(key))
  }
  const instance = await starting
  instance.users += 1
  return instance
}

/** Stops the embedded database when its last user lets go: closes the socket, flushes and closes PGlite. */
export async function releaseEmbedded(dataDir: string): Promise<void> {
  const key = path.resolve(dataDir)
  const starting = running.get(key)
  if (!starting) return
  const instance = await starting
  instance.users -= 1
  if (instance.users > 0) return
  running.delete(key)
  await shutdown(instance)
}

/** The running instance for `dataDir`, for pg_dump and COPY. */
export async function runningEmbedded(dataDir: string): Promise<EmbeddedDatabase> {
  const starting = running.get(path.resolve(dataDir))
  if (!starting) throw new Error(`the embedded database ${dataDir} is not running`)
  return starting
}

async function start(dataDir: string): Promise<Running> {
  usableDataDir(dataDir)
  // The guard comes first: a Ctrl-C the moment the lock file exists must find it in place.
  const signals = guardSignals(dataDir)
  let releaseLock: () => void
  try {
    releaseLock = lockDataDir(dataDir)
  } catch (error) {
    signals.off()
    throw error instanceof TwDbError ? error : dataDirError(dataDir, error)
  }
  try {
    const [{PGlite}, {uuid_ossp}, {PGLiteSocketServer}] = await Promise.all([
      import('@electric-sql/pglite'),
      import('@electric-sql/pglite/contrib/uuid_ossp'),
      import('@electric-sql/pglite-socket'),
    ])
    let pglite: PGlite
    try {
      pglite = await PGlite.create({dataDir, extensions: {uuid_ossp}})
    } catch (error) {
      throw new TwDbError('E_EMBEDDED', `cannot open the embedded database in ${dataDir}: ${(error as Error)?.message || String(error)}`, {
        hint: 'The directory must be empty or hold a PGlite database; move it aside to start a new one.',
        cause: error,
      })
    }
    await restoreSessionDefaults(pglite)
    // Several connections may attach (check-connection opens a second one); PGlite runs their queries one at a time.
    const server = new PGLiteSocketServer({db: pglite, host: '127.0.0.1', port: 0, maxConnections: 8})
    await server.start()
    const port = Number(server.getServerConn().split(':').pop())
    const release = () => {
      signals.off()
      releaseLock()
    }
    const instance: Running = {dataDir, host: '127.0.0.1', port, pglite, server, users: 0, release}
    signals.ready(() => shutdown(instance))
    return instance
  } catch (error) {
    signals.off()
    releaseLock()
    throw error
  }
}

/**
 * Refuses a data directory PGlite must not be pointed at: a path that is not a
 * directory, or a directory that holds other files but no PostgreSQL data
 * (PG_VERSION), which PGlite would fill with its own. Creates its parent.
 */
function usableDataDir(dataDir: string): void {
  let info: Stats | undefined
  let entries: string[] = []
  try {
    mkdirSync(path.dirname(dataDir), {recursive: true, mode: 0o700})
    info = statSync(dataDir, {throwIfNoEntry: false})
    if (info?.isDirectory()) entries = readdirSync(dataDir)
  } catch (error) {
    throw dataDirError(dataDir, error)
  }
  if (info && !info.isDirectory()) {
    throw new TwDbError('E_EMBEDDED', `cannot open the embedded database in ${dataDir}: it is a file, not a directory`, {
      hint: 'Point pglite: at a directory (a new one is created).',
    })
  }
  if (entries.length > 0 && !entries.includes('PG_VERSION')) {
    throw new TwDbError('E_EMBEDDED', `cannot open the embedded database in ${dataDir}: the directory holds other files and no database`, {
      hint: 'Point pglite: at an empty or new directory, or at one that already holds a tw-db embedded database.',
    })
  }
}

/** A file-system failure around the data directory (its parent, its lock), as one clear line. */
function dataDirError(dataDir: string, error: unknown): TwDbError {
  const {code, message} = error as NodeJS.ErrnoException
  const reasons: Record<string, string> = {
    EACCES: 'permission denied',
    EPERM: 'permission denied',
    ENOTDIR: 'part of the path is a file',
    EEXIST: 'part of the path is a file',
    EROFS: 'the file system is read-only',
    ENOENT: 'files cannot be created there',
  }
  const reason = (code && reasons[code]) ?? message
  return new TwDbError('E_EMBEDDED', `cannot use ${dataDir} for the embedded database: ${reason}`, {
    hint: 'Point pglite: at a directory this user can create and write (the lock file goes beside it).',
    cause: error,
  })
}

/**
 * PGlite ignores startup parameters and every connection shares its one
 * session: set what createPool asks a server for here, and again after
 * anything (a restored dump) that changed the session's settings.
 */
export async function restoreSessionDefaults(pglite: PGlite): Promise<void> {
  await pglite.exec(`reset all; set application_name = '${APPLICATION_NAME}'; set client_min_messages = warning`)
}

async function shutdown(instance: Running): Promise<void> {
  try {
    await instance.server.stop()
    await instance.pglite.close()
  } finally {
    instance.release()
  }
}

/**
 * Ctrl-C or SIGTERM in a command that does not handle signals itself: close
 * PGlite (an open transaction rolls back) before exiting, so the data
 * directory is left clean. A signal that comes while PGlite is still opening
 * (or creating) the directory waits for that to finish: a half-created data
 * directory could not be opened again. Commands that handle signals
 * themselves (migrate, backup) wind down on their own and release the
 * database in their `finally`.
 */
function guardSignals(dataDir: string): {ready: (stop: () => Promise<void>) => void; off: () => void} {
  let stop: (() => Promise<void>) | undefined
  let pending: NodeJS.Signals | undefined
  let exiting = false
  const exit = (signal: NodeJS.Signals, stopInstance: () => Promise<void>) => {
    if (exiting) return
    exiting = true
    running.delete(dataDir)
    const code = signal === 'SIGINT' ? 130 : 143
    // Closing PGlite holds no handle of its own: without this timer node could run out of work first and
    // end with the command's exit code (its connection refused by the closing database). It also bounds
    // the wait: a close racing the command's connection has been seen never to finish.
    setTimeout(() => process.exit(code), 5000)
    void stopInstance().finally(() => process.exit(code))
  }
  const onSignal = (signal: NodeJS.Signals) => {
    const handledElsewhere = process.listeners(signal).some((listener) => listener !== onSignal)
    if (handledElsewhere) return
    if (stop) exit(signal, stop)
    else pending = signal
  }
  // First in line, so that a command's own `once` listener is still registered when this one looks.
  process.prependListener('SIGINT', onSignal)
  process.prependListener('SIGTERM', onSignal)
  return {
    ready(stopInstance) {
      stop = stopInstance
      if (pending) exit(pending, stopInstance)
    },
    off() {
      process.off('SIGINT', onSignal)
      process.off('SIGTERM', onSignal)
    },
  }
}

/**
 * PGlite is single-process: two tw-db processes on one data directory would
 * corrupt it. A lock file beside the directory, holding the owner's pid,
 * keeps the second one out; a lock left by a process that died is taken over
 * (breakStaleLock).
 */
function lockDataDir(dataDir: string): () => void {
  const lockFile = `${dataDir}.lock`
  for (let attempt = 0; attempt < 50; attempt++) {
    if (createLockFile(lockFile)) {
      const release = () => {
        process.off('exit', release)
        if (lockOwner(lockFile) === process.pid) unlinkQuietly(lockFile)
      }
      process.on('exit', release)
      return release
    }
    const owner = lockOwner(lockFile)
    if (owner !== undefined && owner !== process.pid && processExists(owner)) {
      throw new TwDbError('E_EMBEDDED_BUSY', `the embedded database ${dataDir} is in use by another tw-db process (pid ${owner})`, {
        hint: `Wait for it to finish. If no tw-db is running, delete ${lockFile}.`,
      })
    }
    // Another process is taking the stale lock over: give it a moment, then look again.
    if (!breakStaleLock(lockFile, owner)) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10)
  }
  throw new TwDbError('E_EMBEDDED_BUSY', `cannot lock the embedded database ${dataDir}`, {exit: EXIT.FAILED, hint: `Delete ${lockFile} if no tw-db is running.`})
}

/**
 * Creates `file` holding this process's pid; false if it exists. The file
 * appears whole (a hard link to a file already written), so no other process
 * ever reads it empty and takes it for a stale one.
 */
function createLockFile(file: string): boolean {
  const written = `${file}.${process.pid}`
  writeFileSync(written, `${process.pid}\n`, {mode: 0o600})
  try {
    linkSync(written, file)
    return true
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw error
  } finally {
    unlinkQuietly(written)
  }
}

/**
 * Removes a lock left by `stalePid`, a process that no longer runs, and only
 * if the lock still names it: of two processes that found the same stale
 * lock, the second must not remove the lock the first has just created. The
 * check and the removal happen under a second lock file, held for no longer
 * than that. Returns false when another process holds it.
 */
function breakStaleLock(lockFile: string, stalePid: number | undefined): boolean {
  const takeover = `${lockFile}.takeover`
  if (!createLockFile(takeover)) {
    const holder = lockOwner(takeover)
    // One that died between its two steps leaves it behind.
    if (holder === undefined || !processExists(holder)) unlinkQuietly(takeover)
    return false
  }
  try {
    if (lockOwner(lockFile) === stalePid) unlinkQuietly(lockFile)
  } finally {
    unlinkQuietly(takeover)
  }
  return true
}

/** The pid a lock file names, or undefined when it holds none (or is gone). */
function lockOwner(lockFile: string): number | undefined {
  let text: string
  try {
    text = readFileSync(lockFile, 'utf8')
  } catch {
    return undefined
  }
  const pid = Number.parseInt(text, 10)
  return Number.isInteger(pid) ? pid : undefined
}

function unlinkQuietly(file: string): void {
  try {
    unlinkSync(file)
  } catch {
    // Already gone.
  }
}
