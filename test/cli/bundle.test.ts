/**
 * The CLI runs from the bundle that `npm run build` writes (scripts/bundle.mjs):
 * oclif and the dependencies come from dist/chunks, not node_modules, and the
 * embedded database still loads only through a dynamic import.
 */
import assert from 'node:assert/strict'
import {readdirSync} from 'node:fs'
import {isBuiltin} from 'node:module'
import path from 'node:path'
import {describe, it} from 'node:test'
import {fileURLToPath} from 'node:url'

import {Config} from '@oclif/core'

import {runCli} from '../support/cli.js'
import {staticGraph} from '../support/import-graph.js'

const DIST = fileURLToPath(new URL('../../dist/', import.meta.url))
const entries = [path.join(DIST, 'cli.js'), ...readdirSync(path.join(DIST, 'commands')).filter((name) => name.endsWith('.js')).map((name) => path.join(DIST, 'commands', name))]

describe('the bundled CLI', () => {
  for (const entry of entries) {
    it(`${path.relative(DIST, entry)} loads only node built-ins statically, from shared chunks`, () => {
      const {files, packages} = staticGraph(entry)
      assert.ok([...files].some((file) => file.includes(`${path.sep}chunks${path.sep}`)), 'it imports the shared chunks')
      assert.deepEqual([...packages].filter((name) => !isBuiltin(name)), [])
    })
  }

  it('leaves src/lib/embedded.ts in a chunk of its own that no static graph reaches', () => {
    const reachable = new Set(entries.flatMap((entry) => [...staticGraph(entry).files]))
    const embedded = readdirSync(path.join(DIST, 'chunks')).filter((name) => name.startsWith('embedded-'))
    assert.equal(embedded.length, 1, 'esbuild names a dynamically imported module\'s chunk after it')
    assert.equal(reachable.has(path.join(DIST, 'chunks', embedded[0])), false)
  })

  it('answers --version without oclif exactly as oclif would, and --help from the bundle', async () => {
    const version = await runCli(['--version'])
    assert.equal(version.code, 0, version.stderr)
    const oclif = await Config.load(fileURLToPath(new URL('../../', import.meta.url)))
    assert.equal(version.stdout, `${oclif.userAgent}\n`)
    const help = await runCli(['status', '--help'])
    assert.equal(help.code, 0, help.stderr)
    assert.match(help.stdout, /--database-url/)
  })
})
