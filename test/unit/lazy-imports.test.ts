/**
 * Commands against a real server must not load PGlite: the embedded database
 * is reached only through dynamic import(). This walks the static import graph
 * of every command and of the API from the sources.
 */
import assert from 'node:assert/strict'
import {readFileSync, readdirSync} from 'node:fs'
import path from 'node:path'
import {describe, it} from 'node:test'
import {fileURLToPath} from 'node:url'

const SRC = fileURLToPath(new URL('../../src/', import.meta.url))
const STATIC_IMPORT = /^\s*(?:import|export)\s+(?!type\b)[^'"]*?from\s+'([^']+)'|^\s*import\s+'([^']+)'/gm

/** Every module reachable from `entry` through static, non-type imports: local files and packages. */
function staticGraph(entry: string): {files: Set<string>; packages: Set<string>} {
  const files = new Set<string>()
  const packages = new Set<string>()
  const visit = (file: string) => {
    if (files.has(file)) return
    files.add(file)
    for (const match of readFileSync(file, 'utf8').matchAll(STATIC_IMPORT)) {
      const specifier = match[1] ?? match[2]
      if (specifier.startsWith('.')) visit(path.resolve(path.dirname(file), specifier.replace(/\.js$/, '.ts')))
      else packages.add(specifier)
    }
  }
  visit(entry)
  return {files, packages}
}

const entries = [
  ...readdirSync(path.join(SRC, 'commands')).map((name) => path.join(SRC, 'commands', name)),
  path.join(SRC, 'index.ts'),
]

describe('lazy loading of the embedded database', () => {
  for (const entry of entries) {
    it(`${path.relative(SRC, entry)} does not statically import PGlite or src/lib/embedded.ts`, () => {
      const {files, packages} = staticGraph(entry)
      assert.ok(files.size > 1, 'the walker found the imports')
      assert.deepEqual([...packages].filter((name) => name.startsWith('@electric-sql/')), [])
      assert.equal(files.has(path.join(SRC, 'lib', 'embedded.ts')), false)
    })
  }

  it('the walker does see a static import when there is one', () => {
    const {packages} = staticGraph(path.join(SRC, 'lib', 'embedded.ts'))
    assert.ok(packages.has('node:fs'))
  })
})
