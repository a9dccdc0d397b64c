/**
 * Runs that break half-way: a killed tw-db, a terminated backend, a stopped
 * server. Afterwards every migration must be either fully applied and
 * recorded or not at all, and a re-run must finish the job exactly once.
 */
import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import type postgres from 'postgres'

import {collect, parseJson, runCli, spawnCli, waitUntil} from '../support/cli.js'
import {startServer, testMajors, useServers} from '../support/postgres.js'
import {createLegacyTable, ledgerRows, tableExists, twDbWaitsForALock} from '../support/schema.js'

const servers = useServers()

/** A legacy database with v1 values, and an application session holding its table locked. */
async function legacyDatabaseLockedByApp(sql: postgres.Sql): Promise<postgres.ReservedSql> {
  await createLegacyTable(sql)
  await sql`insert into guild_templates_kv (id, guild_id, key, value) values ('a', 'g', 'k1', '{"n": 1}'), ('b', 'g', 'k2', '[true, "x"]')`
  const app = await sql.reserve()
  await app`begin`
  await app`lock table guild_templates_kv in share mode`
  return app
}

async function assertConvertedOnce(sql: postgres.Sql): Promise<void> {
  const rows = await sql`select id, value::text as value from tenant_kv order by id`
  assert.deepEqual(rows.map((r) => ({...r})), [
    {id: 'a', value: '{"Map": [[{"Text": "n"}, {"Integer": 1}]]}'},
    {id: 'b', value: '{"List": [{"Boolean": true}, {"Text": "x"}]}'},
  ])
}

for (const major of testMajors()) {
  describe(`faults during migrate on PostgreSQL ${major}`, () => {
    it('kill -9 while a migration waits on a lock: all or nothing, and a re-run converts v1 data exactly once', async () => {
      const db = await servers.get(major)!.createDatabase()
      const app = await legacyDatabaseLockedByApp(db.sql)
      const twDbBackends = async () => (await db.sql`select count(*)::int as n from pg_stat_activity where application_name = 'tw-db'`)[0].n
      // From PostgreSQL 14 tw-db asks the server to check every second that it is still connected.
      const deadClientCheck = major >= 14
      try {
        const child = spawnCli(['migrate', '--database-url', db.url])
        const run = collect(child)
        await waitUntil(() => twDbWaitsForALock(db.sql))
        child.kill('SIGKILL')
        assert.equal((await run).signal, 'SIGKILL')
        // The orphaned backend notices its client is gone while still waiting, and rolls back.
        if (deadClientCheck) await waitUntil(async () => (await twDbBackends()) === 0, 10_000)
        await app`rollback`
      } finally {
        app.release()
      }
      // Without the check the backend holds the whole migration, COMMIT included, once the lock is free: it
      // commits it, or fails writing its results to the dead client first. Either way, all or nothing.
      await waitUntil(async () => (await twDbBackends()) === 0)
      const recorded = (await ledgerRows(db.sql)).map((row) => row.id)
      const [{value}] = await db.sql`select value::text from guild_templates_kv where id = 'a'`
      if (deadClientCheck) assert.deepEqual(recorded, [], 'the dead-client check stopped the orphaned backend')
      if (recorded.length === 0) {
        assert.equal(value, '{"n": 1}', 'the v1 value is untouched')
      } else {
        assert.deepEqual(recorded, ['khronosvalue_v2'])
        assert.equal(value, '{"Map": [[{"Text": "n"}, {"Integer": 1}]]}', 'converted once, with its ledger row')
      }
      assert.equal(await tableExists(db.sql, 'tenant_kv'), false)

      const again = await runCli(['migrate', '--database-url', db.url])
      assert.equal(again.code, 0, again.stderr)
      await assertConvertedOnce(db.sql)
      assert.equal((await ledgerRows(db.sql)).length, 5)
    })

    it('a backend terminated with pg_terminate_backend mid-migration: exit 1, one clear line, consistent state', async () => {
      const db = await servers.get(major)!.createDatabase()
      const app = await legacyDatabaseLockedByApp(db.sql)
      let result
      try {
        const run = collect(spawnCli(['migrate', '--database-url', db.url, '--json']))
        await waitUntil(() => twDbWaitsForALock(db.sql))
        await db.sql`select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'tw-db'`
        result = await run
        await app`rollback`
      } finally {
        app.release()
      }
      assert.equal(result.code, 1)
      const {error} = parseJson(result)
      assert.equal(error.code, 'E_CONNECTION_LOST')
      assert.match(error.message, /^lost the connection to the server while applying khronosvalue_v2/)
      assert.match(error.hint, /committed with its ledger row or rolled back as a whole/)
      assert.deepEqual(await ledgerRows(db.sql), [])
      assert.equal(await tableExists(db.sql, 'tenant_kv'), false)
      const again = await runCli(['migrate', '--database-url', db.url])
      assert.equal(again.code, 0, again.stderr)
      await assertConvertedOnce(db.sql)
    })

    it('the server stopping mid-run: exit 1 with a lost-connection error', async () => {
      const server = await startServer(major)
      try {
        const db = await server.createDatabase()
        const app = await legacyDatabaseLockedByApp(db.sql)
        const run = collect(spawnCli(['migrate', '--database-url', db.url]))
        await waitUntil(() => twDbWaitsForALock(db.sql))
        app.release()
        await server.stop()
        const result = await run
        assert.equal(result.code, 1)
        // Which migration the stop hits depends on timing; the error must name it and say it was lost.
        assert.match(result.stderr, /^Error: lost the connection to the server while applying \w+/m)
        assert.match(result.stderr, /^Hint: It was committed with its ledger row or rolled back as a whole: tw-db status shows which/m)
      } finally {
        await server.stop().catch(() => undefined)
      }
    })

    it('8 simultaneous runs: each migration applied exactly once, every run exits 0', async () => {
      const db = await servers.get(major)!.createDatabase()
      const runs = await Promise.all(Array.from({length: 8}, () => collect(spawnCli(['migrate', '--database-url', db.url, '--json']))))
      for (const run of runs) assert.equal(run.code, 0, run.stderr)
      const applied = runs.flatMap((run) => parseJson(run).applied.map((a: {id: string}) => a.id))
      assert.equal(applied.length, 5)
      assert.equal(new Set(applied).size, 5)
      assert.equal((await ledgerRows(db.sql)).length, 5)
    })
  })
}
