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
 * those of the file). COPY data passes through untouched, as bytes. The SQL
 * around it is read as latin1, which keeps every byte one character: the
 * statement boundaries are ASCII, and UTF-8 text passes through as it came.
 */
export class TransactionControlFilter {
  private pending = ''
  private inCopyData = false

  /** The bytes ready to go on after `chunk`. */
  push(chunk: Buffer): Buffer[] {
    this.pending += chunk.toString('latin1')
    return this.drain(false)
  }

  /** The rest, at the end of the script. */
  end(): Buffer[] {
    return this.drain(true)
  }

  private drain(atEnd: boolean): Buffer[] {
    const text = this.pending
    const out: string[] = []
    // Passes on text[i, to) and moves past it.
    let i = 0
    const pass = (to: number) => {
      out.push(text.slice(i, to))
      i = to
    }
    // Before the script ends, only whole lines may go on: the rest of a line decides what it is.
    const wholeLines = () => (atEnd ? text.length : Math.max(i, text.lastIndexOf('\n') + 1))
    for (;;) {
      if (this.inCopyData) {
        const terminator = copyDataEnd(text, i)
        if (terminator === -1) {
          pass(wholeLines())
          break
        }
        const after = lineEnd(text, terminator) + 1
        if (after > text.length && !atEnd) {
          pass(terminator)
          break
        }
        pass(Math.min(after, text.length))
        this.inCopyData = false
        continue
      }
      const start = skipBlankAndCommentLines(text, i)
      if (start >= text.length) {
        pass(wholeLines())
        break
      }
      if (text[start] === '\\') {
        const after = lineEnd(text, start) + 1
        if (after > text.length && !atEnd) break
        pass(Math.min(after, text.length))
        continue
      }
      const end = statementEnd(text, start)
      // A statement is whole once something follows its semicolon (or the script has ended).
      if (end >= text.length && !atEnd) break
      pass(start)
      const statement = text.slice(start, end)
      out.push(isTransactionControl(statement) ? commentedOut(statement) : statement)
      i = end
      if (COPY_FROM_STDIN.test(stripSqlComments(statement))) {
        // Its data starts on the next line.
        const after = lineEnd(text, i) + 1
        if (after > text.length && !atEnd) {
          this.inCopyData = true
          this.pending = ''
          return [...out, text.slice(i)].filter((piece) => piece.length > 0).map((piece) => Buffer.from(piece, 'latin1'))
        }
        pass(Math.min(after, text.length))
        this.inCopyData = true
      }
    }
    this.pending = text.slice(i)
    return out.filter((piece) => piece.length > 0).map((piece) => Buffer.from(piece, 'latin1'))
  }
}

/** The offset of the `\.` line that ends COPY data at or after `from` (a line start), or -1. */
function copyDataEnd(text: string, from: number): number {
  const isEnd = (at: number) => text.startsWith('\\.', at) && (at + 2 === text.length || text[at + 2] === '\n' || text[at + 2] === '\r')
  if (isEnd(from)) return from
  for (let newline = text.indexOf('\n\\.', from); newline !== -1; newline = text.indexOf('\n\\.', newline + 1)) {
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
