/**
 * Pure: a plain pg_dump script as the steps psql would run, for the embedded
 * database, where there is no psql. SQL statements run as they are; the data
 * of `COPY … FROM stdin` follows its statement up to the line `\.`.
 */
import {statementEnd, stripSqlComments} from './sql-text.js'

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
      steps.push({kind: 'sql', sql, line})
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
