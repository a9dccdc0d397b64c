import {createHash} from 'node:crypto'
import {readFileSync, readdirSync} from 'node:fs'
import path from 'node:path'
import {fileURLToPath} from 'node:url'

import {TwDbError} from './errors.js'
import {findTransactionControl} from './sql-text.js'

export interface Migration {
  /** The `NNNN` prefix, which fixes the order. */
  readonly prefix: string
  /** Recorded in the ledger; never changes once released. */
  readonly id: string
  readonly description: string
  /** false for `-- transaction: false` files, run statement by statement. */
  readonly transaction: boolean
  /** SHA-256 (hex) of the file with CRLF normalised to LF. */
  readonly checksum: string
  /**
   * Checksums of earlier versions of this file that did the same thing
   * (`-- replaces-checksum: …` header lines): a ledger row holding one of
   * them is this migration, applied, not a modified one.
   */
  readonly replacedChecksums: readonly string[]
  readonly sql: string
  /** Path of the file, for messages. */
  readonly file: string
}

/** The registry shipped with tw-db (src/migrations, two levels above this module in src/ and in dist/). */
export const BUNDLED_MIGRATIONS_DIR = fileURLToPath(new URL('../../src/migrations/', import.meta.url))

const FILE_NAME = /^(\d{4})_([a-z0-9_]+)\.sql$/
const HEADER_LINE = /^--\s*(description|transaction|replaces-checksum)\s*:\s*(.*?)\s*$/
const CHECKSUM = /^[0-9a-f]{64}$/

export interface MigrationSource {
  /** The file name (for NNNN and id) and its raw bytes. */
  name: string
  file: string
  bytes: Uint8Array
}

export async function loadRegistry(dir: string = BUNDLED_MIGRATIONS_DIR): Promise<Migration[]> {
  // Read synchronously: nothing else runs meanwhile, and hundreds of small files
  // read through the thread pool took three times as long.
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    throw new TwDbError('E_REGISTRY', `cannot read the migrations directory ${dir}: ${code === 'ENOENT' ? 'it does not exist' : (error as Error).message}`, {
      exit: 2,
      hint: 'Check --migrations-dir.',
    })
  }
  const sources = names
    .filter((name) => name.endsWith('.sql'))
    .sort()
    .map((name) => {
      const file = path.join(dir, name)
      try {
        return {name, file, bytes: readFileSync(file)}
      } catch (error) {
        throw registryError(file, `cannot read it (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`)
      }
    })
  return parseRegistry(sources)
}

/** Pure: validates the files and returns the migrations in order, or throws naming the first bad file. */
export function parseRegistry(sources: readonly MigrationSource[]): Migration[] {
  const migrations = [...sources].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)).map(parseMigration)
  const byId = new Map<string, Migration>()
  const byPrefix = new Map<string, Migration>()
  for (const migration of migrations) {
    const sameId = byId.get(migration.id)
    if (sameId) throw registryError(migration.file, `duplicate migration id "${migration.id}" (also ${path.basename(sameId.file)})`)
    const samePrefix = byPrefix.get(migration.prefix)
    if (samePrefix) throw registryError(migration.file, `duplicate order prefix ${migration.prefix} (also ${path.basename(samePrefix.file)})`)
    byId.set(migration.id, migration)
    byPrefix.set(migration.prefix, migration)
  }
  return migrations
}

export function parseMigration(source: MigrationSource): Migration {
  const match = FILE_NAME.exec(source.name)
  if (!match) throw registryError(source.file, 'the file name must be NNNN_<id>.sql, with <id> made of a-z, 0-9 and _')
  let text: string
  try {
    // ignoreBOM keeps a BOM in the text, so the checksum covers the file's bytes as they are.
    text = new TextDecoder('utf-8', {fatal: true, ignoreBOM: true}).decode(source.bytes)
  } catch {
    throw registryError(source.file, 'the file is not valid UTF-8')
  }
  const normalised = text.replace(/\r\n/g, '\n')
  const sql = normalised.replace(/^\uFEFF/, '')
  const header = parseHeader(sql, source.file)
  if (!header.description) throw registryError(source.file, 'missing "-- description: …" header line')
  if (!/\S/.test(stripComments(sql))) throw registryError(source.file, 'the file holds no SQL')
  return {
    prefix: match[1],
    id: match[2],
    description: header.description,
    transaction: header.transaction,
    checksum: createHash('sha256').update(normalised).digest('hex'),
    replacedChecksums: header.replacedChecksums,
    sql,
    file: source.file,
  }
}

/**
 * Refuses, naming the file and line, a migration that tw-db runs in a
 * transaction but that begins or ends one itself: its ledger row would then
 * commit without it. Checked for the migrations about to run, not on every
 * load: `status` has no need to lex every file.
 */
export function refuseOwnTransactions(migrations: readonly Migration[]): void {
  for (const migration of migrations) {
    const control = migration.transaction ? findTransactionControl(migration.sql) : undefined
    if (control) {
      throw registryError(
        migration.file,
        `line ${control.line}: ${control.keyword} would end the transaction tw-db applies and records this migration in; remove it (each migration runs in a transaction of its own), or mark the file "-- transaction: false"`,
      )
    }
  }
}

function parseHeader(sql: string, file: string): {description?: string; transaction: boolean; replacedChecksums: string[]} {
  let description: string | undefined
  let transaction = true
  const replacedChecksums: string[] = []
  for (const line of sql.split('\n')) {
    if (line.trim() === '') continue
    if (!line.startsWith('--')) break
    const match = HEADER_LINE.exec(line)
    if (!match) continue
    const [, key, value] = match
    if (key === 'description') description = value || undefined
    else if (key === 'replaces-checksum') {
      if (!CHECKSUM.test(value)) throw registryError(file, `"-- replaces-checksum:" must be a SHA-256 in 64 lowercase hex digits, got "${value}"`)
      replacedChecksums.push(value)
    } else if (value === 'false' || value === 'true') transaction = value === 'true'
    else throw registryError(file, `"-- transaction:" must be true or false, got "${value}"`)
  }
  return {description, transaction, replacedChecksums}
}

function stripComments(sql: string): string {
  return sql.replace(/--[^\n]*/g, '')
}

function registryError(file: string, reason: string): TwDbError {
  return new TwDbError('E_REGISTRY', `broken migration registry: ${file}: ${reason}`, {
    hint: 'This is a bug in the migrations directory: fix the file (or report it if it is the bundled registry).',
  })
}
