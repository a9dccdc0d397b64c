/**
 * With fetch_types off, postgres.js never resolves a reserve() that has to
 * open the connection itself (src/lib/connection.ts): every session must be
 * reserved through reserveSession, which opens it first.
 */
import assert from 'node:assert/strict'
import {readFileSync, readdirSync} from 'node:fs'
import path from 'node:path'
import {describe, it} from 'node:test'
import {fileURLToPath} from 'node:url'

const SRC = fileURLToPath(new URL('../../src/', import.meta.url))

describe('reserved sessions', () => {
  it('are taken only through reserveSession', () => {
    const sources = readdirSync(SRC, {recursive: true, encoding: 'utf8'}).filter((file) => file.endsWith('.ts'))
    const callers = sources.filter((file) => /\.reserve\(\)/.test(readFileSync(path.join(SRC, file), 'utf8')))
    assert.deepEqual(callers, [path.join('lib', 'connection.ts')])
  })
})
