/**
 * Pure: plain pg_dump scripts. As the steps psql would run, for the embedded
 * database, where there is no psql: SQL statements run as they are; the data
 * of `COPY … FROM stdin` follows its statement up to the line `\.`. And
 * with their own BEGIN and COMMIT commented out, so that psql can run them
 * in one transaction: pg_dump wraps the data of large objects in them, and
 * that COMMIT would end psql's --single-transaction halfway.
 */
import {isTransactionControl, statementEnd, stripSqlComments} from './sql-text.js'

export type ScriptStep =
  | {readonly kind: 'sql'; readonly sql: string; readonly line: number}
  | {readonly kind: 'copy'; readonly sql: string; readonly data: string; readonly line: number}

/** psql meta-commands pg_dump writes that change nothing in the database (`\restrict` guards psql itself). */
const IGNORED_META_COMMANDS = new Set(['restrict', 'unrestrict'])

const COPY_FROM_STDIN = /^\s*copy\b[\s\S]*\bfrom\s+stdin\b/i

export class DumpScriptError extends Error {
  constructor(
    message: string,
    readonly line: number,
  ) {
    super(message)
  }
}

export function parseDumpScript(source: string): ScriptStep[] {
  const steps: ScriptStep[] = []
  const lineAt = lineCounter(source)
  let i = 0
  while (i < source.length) {
    i = skipBlankAndCommentLines(source, i)
    if (i >= source.length) break
    if (source[i] === '\\') {
      const eol = lineEnd(source, i)
      const command = /^\\(\w+)/.exec(source.slice(i, eol))?.[1] ?? ''
      if (!IGNORED_META_COMMANDS.has(command)) {
        throw new DumpScriptError(`psql command "${source.slice(i, eol).trim()}" is not supported here`, lineAt(i))
      }
      i = eol + 1
      continue
    }
    const end = statementEnd(source, i)
    const sql = source.slice(i, end).trim()
    const line = lineAt(i)
    i = end
    if (!/\S/.test(stripSqlComments(sql))) continue
    if (!COPY_FROM_STDIN.test(stripSqlComments(sql))) {
      if (!isTransactionControl(sql)) steps.push({kind: 'sql', sql, line})
      continue
    }
    const dataStart = lineEnd(source, i) + 1
    const terminator = findLine(source, '\\.', dataStart)
    if (terminator === -1) throw new DumpScriptError('the data of this COPY has no end line "\\."', line)
    steps.push({kind: 'copy', sql, data: source.slice(dataStart, terminator), line})
    i = lineEnd(source, terminator) + 1
  }
  return steps
}

function skipBlankAndCommentLines(source: string, from: number): number {
  let i = from
  for (;;) {
    while (i < source.length && /\s/.test(source[i])) i++
    if (!source.startsWith('--', i)) return i
    i = lineEnd(source, i) + 1
  }
}

function lineEnd(source: string, from: number): number {
  const eol = source.indexOf('\n', from)
  return eol === -1 ? source.length : eol
}

/** The offset of the first line at or after `from` that is exactly `text`, or -1. */
function findLine(source: string, text: string, from: number): number {
  for (let i = from; i < source.length; i = lineEnd(source, i) + 1) {
    const end = lineEnd(source, i)
    const line = source.slice(i, end)
    if (line === text || line === `${text}\r`) return i
  }
  return -1
}

/** 1-based line numbers for increasing offsets, without rescanning from the start each time. */
function lineCounter(source: string): (offset: number) => number {
  let offset = 0
  let line = 1
  return (target) => {
    for (; offset < target; offset++) if (source.charCodeAt(offset) === 10) line++
    return line
  }
}

/**
 * A plain script, streamed, with each top-level statement that begins or ends
 * a transaction turned into a comment, line for line (psql's line numbers stay
 * those of the file). COPY data, most of a dump, passes through as the bytes
 * it came in, never copied. The SQL between is read as latin1, which keeps
 * every byte one character: the statement boundaries are ASCII, and UTF-8
 * text passes through as it came.
 */
export class TransactionControlFilter {
  private pending: Buffer = Buffer.alloc(0)
  private inCopyData = false

  /**
   * The bytes ready to go on after `chunk`: pieces of it (pass them on before
   * `chunk` is reused) or copies. It keeps no reference to `chunk`.
   */
  push(chunk: Buffer): Buffer[] {
    if (this.pending.length === 0) {
      this.pending = chunk
      return this.drain(false)
    }
    if (!this.inCopyData) {
      this.pending = Buffer.concat([this.pending, chunk])
      return this.drain(false)
    }
    // In COPY data, the partial line kept from the last chunk is finished by this chunk's first line:
    // only that line is joined to it, so the chunk itself is never copied.
    const newline = chunk.indexOf(NEWLINE)
    if (newline === -1) {
      this.pending = Buffer.concat([this.pending, chunk])
      return []
    }
    this.pending = Buffer.concat([this.pending, chunk.subarray(0, newline + 1)])
    const out = this.drain(false)
    this.pending = this.pending.length === 0 ? chunk.subarray(newline + 1) : Buffer.concat([this.pending, chunk.subarray(newline + 1)])
    return [...out, ...this.drain(false)]
  }

  /** The rest, at the end of the script. */
  end(): Buffer[] {
    return this.drain(true)
  }

  private drain(atEnd: boolean): Buffer[] {
    const bytes = this.pending
    const out: Buffer[] = []
    // Passes on bytes[i, to) and moves past it.
    let i = 0
    const pass = (to: number) => {
      if (to > i) out.push(bytes.subarray(i, to))
      i = to
    }
    // Before the script ends, only whole lines may go on: the rest of a line decides what it is.
    const wholeLines = () => (atEnd ? bytes.length : Math.max(i, bytes.lastIndexOf(NEWLINE) + 1))
    // The SQL from `base` on, as text; offsets in it plus `base` are offsets in `bytes`.
    let text: string | undefined
    let base = 0
    for (;;) {
      if (this.inCopyData) {
        const terminator = copyDataEnd(bytes, i)
        if (terminator === -1) {
          pass(wholeLines())
          break
        }
        const after = bytes.indexOf(NEWLINE, terminator)
        if (after === -1 && !atEnd) {
          pass(terminator)
          break
        }
        pass(after === -1 ? bytes.length : after + 1)
        this.inCopyData = false
        continue
      }
      if (text === undefined) {
        text = bytes.toString('latin1', i)
        base = i
      }
      const start = skipBlankAndCommentLines(text, i - base) + base
      if (start >= bytes.length) {
        pass(wholeLines())
        break
      }
      if (bytes[start] === BACKSLASH) {
        const after = lineEnd(text, start - base) + 1 + base
        if (after > bytes.length && !atEnd) break
        pass(Math.min(after, bytes.length))
        continue
      }
      const end = statementEnd(text, start - base) + base
      // A statement is whole once something follows its semicolon (or the script has ended).
      if (end >= bytes.length && !atEnd) break
      const statement = text.slice(start - base, end - base)
      if (isTransactionControl(statement)) {
        pass(start)
        out.push(Buffer.from(commentedOut(statement), 'latin1'))
        i = end
      } else {
        pass(end)
      }
      if (COPY_FROM_STDIN.test(stripSqlComments(statement))) {
        // Its data starts on the next line.
        const after = lineEnd(text, end - base) + 1 + base
        this.inCopyData = true
        text = undefined
        if (after > bytes.length) {
          // The rest of the COPY line has not come: it goes on with the data, which cannot match "\.".
          pass(bytes.length)
          break
        }
        pass(after)
      }
    }
    // A copy: the rest is a partial line or statement, and must not hold on to the whole chunk.
    this.pending = Buffer.from(bytes.subarray(i))
    return out
  }
}

const NEWLINE = 0x0a
const BACKSLASH = 0x5c

/** The offset of the `\.` line that ends COPY data at or after `from` (a line start), or -1. */
function copyDataEnd(bytes: Buffer, from: number): number {
  const isEnd = (at: number) =>
    bytes[at] === BACKSLASH && bytes[at + 1] === 0x2e && (at + 2 === bytes.length || bytes[at + 2] === NEWLINE || bytes[at + 2] === 0x0d)
  if (isEnd(from)) return from
  for (let newline = bytes.indexOf('\n\\.', from); newline !== -1; newline = bytes.indexOf('\n\\.', newline + 1)) {
    if (isEnd(newline + 1)) return newline + 1
  }
  return -1
}

function commentedOut(statement: string): string {
  return statement
    .split('\n')
    .map((line) => (line.trim() === '' ? line : `-- ${line}`))
    .join('\n')
}
