/** Pure helpers over SQL source text: statement splitting and error positions. */

export interface Statement {
  readonly sql: string
  /** 0-based offset of the statement's first character in the source. */
  readonly offset: number
}

/**
 * Splits a script on top-level semicolons, respecting quotes, quoted
 * identifiers, dollar quotes and comments. Used for `-- transaction: false`
 * migrations, which must send one statement at a time.
 */
export function splitStatements(source: string): Statement[] {
  const statements: Statement[] = []
  for (let start = 0; start < source.length; ) {
    const end = statementEnd(source, start)
    const text = source.slice(start, end)
    if (/\S/.test(stripSqlComments(text))) {
      const lead = text.length - text.trimStart().length
      statements.push({sql: text.trim(), offset: start + lead})
    }
    start = end
  }
  return statements
}

/**
 * The offset just past the first top-level semicolon at or after `from` (or
 * the end of the source), skipping quotes, quoted identifiers, dollar quotes
 * and comments. Like psql, it also keeps together what a semicolon cannot
 * end: parentheses (a rule's action list) and, in CREATE [OR REPLACE]
 * FUNCTION or PROCEDURE, a `BEGIN ATOMIC … END` body, whose CASE … END
 * expressions are counted too.
 */
export function statementEnd(source: string, from: number): number {
  let parenDepth = 0
  let beginDepth = 0
  const words: string[] = []
  let i = from
  while (i < source.length) {
    const ch = source[i]
    const next = source[i + 1]
    if (IDENTIFIER_START.test(ch) && !IDENTIFIER_PART.test(source[i - 1] ?? '')) {
      const end = identifierEnd(source, i)
      const word = source.slice(i, end).toLowerCase()
      if (words.length < 4) words.push(word)
      if (definesRoutine(words)) {
        if (word === 'begin' || (word === 'case' && beginDepth > 0)) beginDepth++
        else if (word === 'end' && beginDepth > 0) beginDepth--
      }
      i = end
    } else if (ch === '(') {
      parenDepth++
      i++
    } else if (ch === ')') {
      parenDepth = Math.max(0, parenDepth - 1)
      i++
    } else if (ch === '-' && next === '-') {
      const eol = source.indexOf('\n', i)
      i = eol === -1 ? source.length : eol + 1
    } else if (ch === '/' && next === '*') {
      i = skipBlockComment(source, i)
    } else if (ch === "'") {
      const escapes = i > 0 && /[eE]/.test(source[i - 1]) && !/\w/.test(source[i - 2] ?? '')
      i = skipQuoted(source, i, "'", escapes)
    } else if (ch === '"') {
      i = skipQuoted(source, i, '"', false)
    } else if (ch === '$') {
      const tag = /^\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$/.exec(source.slice(i, i + 64))
      if (tag && !/\w/.test(source[i - 1] ?? '')) {
        const close = source.indexOf(tag[0], i + tag[0].length)
        i = close === -1 ? source.length : close + tag[0].length
      } else {
        i++
      }
    } else if (ch === ';' && parenDepth === 0 && beginDepth === 0) {
      return i + 1
    } else {
      i++
    }
  }
  return source.length
}

const IDENTIFIER_START = /[A-Za-z_\u0080-\uffff]/
const IDENTIFIER_PART = /[A-Za-z0-9_$\u0080-\uffff]/

function identifierEnd(source: string, from: number): number {
  let i = from + 1
  while (i < source.length && IDENTIFIER_PART.test(source[i])) i++
  return i
}

/** Whether a statement's first words are CREATE [OR REPLACE] FUNCTION or PROCEDURE. */
function definesRoutine(words: readonly string[]): boolean {
  if (words[0] !== 'create') return false
  const kind = words[1] === 'or' && words[2] === 'replace' ? words[3] : words[1]
  return kind === 'function' || kind === 'procedure'
}

function skipBlockComment(source: string, from: number): number {
  let depth = 0
  let i = from
  while (i < source.length) {
    if (source.startsWith('/*', i)) {
      depth++
      i += 2
    } else if (source.startsWith('*/', i)) {
      depth--
      i += 2
      if (depth === 0) return i
    } else {
      i++
    }
  }
  return i
}

function skipQuoted(source: string, from: number, quote: string, backslashEscapes: boolean): number {
  let i = from + 1
  while (i < source.length) {
    const ch = source[i]
    if (backslashEscapes && ch === '\\') {
      i += 2
    } else if (ch === quote) {
      if (source[i + 1] === quote) i += 2
      else return i + 1
    } else {
      i++
    }
  }
  return i
}

/** Statements that end (or start) the transaction they run in; SAVEPOINT and ROLLBACK TO do not. */
const TRANSACTION_CONTROL = /^(begin|start\s+transaction|commit|end|abort|rollback(?!\s+(?:work\s+|transaction\s+)?to\b)|prepare\s+transaction)\b/i
const LEADING_COMMENTS = /^(?:\s+|--[^\n]*(?:\n|$)|\/\*[\s\S]*?\*\/)*/

/** The transaction-control keyword a single statement starts with, after any comments. */
function transactionControlKeyword(statement: string): {keyword: string; lead: number} | undefined {
  const lead = LEADING_COMMENTS.exec(statement)![0].length
  const match = TRANSACTION_CONTROL.exec(statement.slice(lead))
  return match ? {keyword: match[1].replace(/\s+/g, ' ').toUpperCase(), lead} : undefined
}

/** Whether a single statement begins or ends a transaction. */
export function isTransactionControl(statement: string): boolean {
  return transactionControlKeyword(statement) !== undefined
}

/** Any word a transaction-control statement can start with: without one, there is nothing to split. */
const TRANSACTION_CONTROL_WORD = /\b(?:begin|start|commit|end|abort|rollback|prepare)\b/i

/** The first top-level statement of `source` that begins or ends a transaction: its keyword and 1-based line. */
export function findTransactionControl(source: string): {keyword: string; line: number} | undefined {
  if (!TRANSACTION_CONTROL_WORD.test(source)) return undefined
  for (const statement of splitStatements(source)) {
    const control = transactionControlKeyword(statement.sql)
    if (control) {
      const offset = statement.offset + control.lead
      return {keyword: control.keyword, line: source.slice(0, offset).split('\n').length}
    }
  }
  return undefined
}

/**
 * A string as an SQL literal, in the E'' syntax so that it reads the same
 * whatever standard_conforming_strings says.
 */
export function quoteLiteral(value: string): string {
  // A simple query is a C string on the wire: a NUL would end it early.
  if (value.includes('\0')) throw new Error('an SQL literal cannot contain a NUL character')
  return `E'${value.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`
}

export function stripSqlComments(text: string): string {
  return text.replace(/--[^\n]*/g, '').replace(/\/\*[\s\S]*?\*\//g, '')
}

export interface SourcePosition {
  line: number
  column: number
  /** The source line holding the position, for showing the error in context. */
  lineText: string
}

/**
 * Maps PostgreSQL's error position (1-based, counted in characters, not
 * UTF-16 units) inside `source` to a line and column.
 */
export function positionToLineColumn(source: string, position: number): SourcePosition | undefined {
  if (!Number.isInteger(position) || position < 1) return undefined
  const chars = Array.from(source)
  if (position > chars.length + 1) return undefined
  const before = chars.slice(0, position - 1).join('')
  const lines = before.split('\n')
  const line = lines.length
  const column = Array.from(lines.at(-1) ?? '').length + 1
  return {line, column, lineText: source.split('\n')[line - 1] ?? ''}
}

/** Character (code point) offset of a UTF-16 index, to combine with PostgreSQL positions. */
export function characterOffset(source: string, utf16Index: number): number {
  return Array.from(source.slice(0, utf16Index)).length
}
