/**
 * Which pg_dump/psql tw-db picks among the installed copies. The copies are
 * small shell scripts in temporary directories that print a version (far
 * above any real one installed here) and note each time they are asked.
 */
import assert from 'node:assert/strict'
import {chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, describe, it} from 'node:test'

import {findTools, likelyCopy, pickTool} from '../../src/lib/pgtools.js'

const root = mkdtempSync(path.join(tmpdir(), 'tw-db-pgtools-'))
after(() => rmSync(root, {recursive: true, force: true}))

/** A program printing `pg_dump (PostgreSQL) VERSION` that touches ASKED when run. */
function fakeProgram(dir: string, fileName: string, version: string): {asked: string} {
  mkdirSync(dir, {recursive: true})
  const asked = path.join(dir, `${fileName}.asked`)
  writeFileSync(path.join(dir, fileName), `#!/bin/sh\ntouch '${asked}'\necho 'pg_dump (PostgreSQL) ${version}'\n`)
  chmodSync(path.join(dir, fileName), 0o755)
  return {asked}
}

/** A real binary in one directory, and in another a `pg_dump` link to a wrapper program (as Debian's /usr/bin has). */
function installation(name: string, realVersion: string, wrapperVersion: string) {
  const realDir = path.join(root, name, 'real')
  const wrapperDir = path.join(root, name, 'wrapper-bin')
  const real = fakeProgram(realDir, 'pg_dump', realVersion)
  const wrapper = fakeProgram(path.join(root, name, 'share'), 'pg_wrapper', wrapperVersion)
  mkdirSync(wrapperDir, {recursive: true})
  symlinkSync(path.join(root, name, 'share', 'pg_wrapper'), path.join(wrapperDir, 'pg_dump'))
  return {realDir, wrapperDir, real, wrapper, env: {PATH: `${wrapperDir}${path.delimiter}${realDir}`}}
}

describe('findTools and pickTool', () => {
  it('takes a real binary over a wrapper earlier on PATH, without asking the wrapper its version', async () => {
    const setup = installation('real-first', '95.1', '95.1')
    const [best] = await findTools('pg_dump', undefined, setup.env)
    assert.deepEqual(best, {name: 'pg_dump', path: path.join(setup.realDir, 'pg_dump'), version: '95.1', major: 95})
    assert.ok(existsSync(setup.real.asked))
    assert.equal(existsSync(setup.wrapper.asked), false, 'the wrapper was run')
  })

  it('asks the wrappers when no real binary is recent enough, and names every copy when none fits', async () => {
    const setup = installation('wrapper-needed', '96.0', '97.2')
    const savedPath = process.env.PATH
    process.env.PATH = setup.env.PATH
    try {
      const picked = await (await pickTool('pg_dump', {major: 97, version: '97.2'})).choose()
      assert.equal(picked.path, path.join(setup.wrapperDir, 'pg_dump'))
      assert.equal(picked.major, 97)
      await assert.rejects((await pickTool('pg_dump', Promise.resolve({major: 98, version: '98.0'}))).choose(), (error: Error & {code?: string}) => {
        assert.equal(error.code, 'E_PG_TOOL')
        assert.match(error.message, new RegExp(`${path.join(setup.wrapperDir, 'pg_dump')} \\(97\\.2\\)`))
        assert.match(error.message, new RegExp(`${path.join(setup.realDir, 'pg_dump')} \\(96\\.0\\)`))
        return true
      })
    } finally {
      process.env.PATH = savedPath
    }
  })

  it('names the likely copy only when there is one real binary, wrappers aside', () => {
    const real = {file: '/usr/lib/postgresql/15/bin/pg_dump', wrapper: false, order: 3}
    const wrapper = {file: '/usr/bin/pg_dump', wrapper: true, order: 1}
    assert.equal(likelyCopy([wrapper, real]), real.file)
    assert.equal(likelyCopy([real, {file: '/usr/lib/postgresql/16/bin/pg_dump', wrapper: false, order: 4}]), undefined)
    assert.equal(likelyCopy([wrapper]), undefined)
    assert.equal(likelyCopy([]), undefined)
  })
})
