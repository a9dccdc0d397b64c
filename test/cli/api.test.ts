import assert from 'node:assert/strict'
import path from 'node:path'
import {describe, it} from 'node:test'

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
    await assert.rejects(migrate({migrationsDir: path.join(FIXTURES, 'nontx'), env, cwd: path.join(FIXTURES, 'nontx')}), (error: unknown) => {
      assert.ok(error instanceof TwDbError)
      assert.equal(error.code, 'E_NO_DATABASE')
      assert.equal(error.exit, EXIT.USAGE)
      return true
    })
  })
})
