/**
 * Commands against a real server must not load PGlite: the embedded database
 * is reached only through dynamic import(). This walks the static import graph
 * of every command and of the API from the sources.
 */
import assert from 'node:assert/strict'
import {readdirSync} from 'node:fs'
import path from 'node:path'
import {describe, it} from 'node:test'
import {fileURLToPath} from 'node:url'

import {staticGraph} from '../support/import-graph.js'

const SRC = fileURLToPath(new URL('../../src/', import.meta.url))
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

  // Searching for a config file stats a few paths first; cosmiconfig is imported only when one exists.
  for (const entry of entries) {
    it(`${path.relative(SRC, entry)} does not statically import cosmiconfig`, () => {
      assert.equal(staticGraph(entry).packages.has('cosmiconfig'), false)
    })
  }

  it('the walker does see a static import when there is one', () => {
    const {packages} = staticGraph(path.join(SRC, 'lib', 'embedded.ts'))
    assert.ok(packages.has('node:fs'))
  })
})
