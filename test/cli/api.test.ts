import assert from 'node:assert/strict'
import {mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, describe, it} from 'node:test'

import {EXIT, TwDbError, migrate, status, type MigrateEvent} from '../../src/index.js'
import {FIXTURES} from '../support/cli.js'
import {testMajors, useServers} from '../support/postgres.js'
import {ledgerRows, tableExists} from '../support/schema.js'

const servers = useServers(testMajors().slice(0, 1))
const env = {} // nothing from the machine's environment

describe('programmatic API: import {migrate, status} from "tw-db"', () => {
  it('migrates with a fixture registry and reports status, without printing', async () => {
    const db = await [...servers.values()][0].createDatabase()
    const events: MigrateEvent[] = []
    const migrationsDir = path.join(FIXTURES, 'nontx')
    const before = await status({databaseUrl: db.url, migrationsDir, env})
    assert.equal(before.upToDate, false)
    assert.deepEqual(before.summary, {applied: 0, pending: 2, modified: 0, unknown: 0})
    assert.equal(await tableExists(db.sql, '_migrations_applied'), false)

    const result = await migrate({databaseUrl: db.url, migrationsDir, env, onEvent: (event) => events.push(event)})
    assert.deepEqual(result.applied.map((a) => a.id), ['create_t', 'index_concurrently'])
    assert.deepEqual(events.filter((e) => e.type === 'applied').map((e) => (e as {id: string}).id), ['create_t', 'index_concurrently'])
    assert.deepEqual((await ledgerRows(db.sql)).map((r) => r.id), ['create_t', 'index_concurrently'])
    assert.equal((await status({databaseUrl: db.url, migrationsDir, env})).upToDate, true)
  })

  it('throws a TwDbError with code, exit and hint', async () => {
    const db = await [...servers.values()][0].createDatabase()
    await assert.rejects(migrate({databaseUrl: db.url, migrationsDir: path.join(FIXTURES, 'failing'), env}), (error: unknown) => {
      assert.ok(error instanceof TwDbError)
      assert.equal(error.code, 'E_MIGRATION_FAILED')
      assert.equal(error.exit, EXIT.FAILED)
      assert.match(error.hint ?? '', /rolled back/)
      return true
    })
    await assert.rejects(migrate({migrationsDir: path.join(FIXTURES, 'nontx'), env: {CI: 'true'}, cwd: path.join(FIXTURES, 'nontx')}), (error: unknown) => {
      assert.ok(error instanceof TwDbError)
      assert.equal(error.code, 'E_NO_DATABASE')
      assert.equal(error.exit, EXIT.USAGE)
      return true
    })
  })
})

const registries: string[] = []
after(() => {
  for (const dir of registries) rmSync(dir, {recursive: true, force: true})
})

/** A registry directory holding exactly these files, removed after the tests. */
function registryDir(files: Record<string, string | Uint8Array>): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'tw-db-api-registry-'))
  registries.push(dir)
  for (const [name, content] of Object.entries(files)) writeFileSync(path.join(dir, name), content)
  return dir
}

// Each broken registry starts with a valid migration, so a run that got past loading would leave a trace.
const VALID_FIRST = '-- description: Create a table\nCREATE TABLE touched (id int);\n'

describe('programmatic API: a broken registry', () => {
  for (const [problem, files, badFile, reason] of [
    ['a duplicate id', {'0001_create_t.sql': VALID_FIRST, '0002_create_t.sql': '-- description: Again\nSELECT 1;\n'}, '0002_create_t.sql', /duplicate migration id "create_t"/],
    ['a file without "-- description:"', {'0001_create_t.sql': VALID_FIRST, '0002_nodesc.sql': '-- just a comment\nSELECT 1;\n'}, '0002_nodesc.sql', /missing "-- description: …" header/],
    ['a file that is not UTF-8', {'0001_create_t.sql': VALID_FIRST, '0002_latin1.sql': Buffer.from('-- description: caf\xe9\nSELECT 1;\n', 'latin1')}, '0002_latin1.sql', /not valid UTF-8/],
  ] as const) {
    it(`rejects ${problem} from migrate() and status() with E_REGISTRY (exit 1) naming the file, touching nothing`, async () => {
      const db = await [...servers.values()][0].createDatabase()
      const migrationsDir = registryDir(files)
      for (const run of [() => migrate({databaseUrl: db.url, migrationsDir, env}), () => status({databaseUrl: db.url, migrationsDir, env})]) {
        await assert.rejects(run(), (error: unknown) => {
          assert.ok(error instanceof TwDbError, `expected a TwDbError, got ${String(error)}`)
          assert.equal(error.code, 'E_REGISTRY')
          assert.equal(error.exit, EXIT.FAILED)
          assert.ok(error.message.includes(path.join(migrationsDir, badFile)), error.message)
          assert.match(error.message, reason)
          return true
        })
      }
      assert.equal(await tableExists(db.sql, '_migrations_applied'), false)
      assert.equal(await tableExists(db.sql, 'touched'), false)
    })
  }
})
