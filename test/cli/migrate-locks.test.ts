import assert from 'node:assert/strict'
import {writeFileSync} from 'node:fs'
import path from 'node:path'
import {describe, it} from 'node:test'

import {FIXTURES, collect, parseJson, runCli, spawnCli, waitUntil} from '../support/cli.js'
import {useServers, testMajors, type TestDatabase} from '../support/postgres.js'
import {columnsOf, ledgerRows, tableExists, twDbWaitsForALock} from '../support/schema.js'
import {temporaryDirectory} from '../support/temp.js'

const BUNDLED_IDS = ['khronosvalue_v2', 'kv_generic', 'tenantstate', 'cleanup_v8', 'drop_tenant_kv_expires_at']
const servers = useServers()

for (const major of testMajors()) {
  describe(`migrate under locks and concurrent runs on PostgreSQL ${major}`, () => {
    const freshDb = (): Promise<TestDatabase> => servers.get(major)!.createDatabase()

    /**
     * A database whose app_table the "application" holds locked in an open
     * transaction, and a config giving each migration `statementLockTimeout` s.
     */
    const lockedByApplication = async (statementLockTimeout: number) => {
      const db = await freshDb()
      await db.sql`create table app_table (id int)`
      const config = path.join(temporaryDirectory(), 'tw-db.config.yaml')
      writeFileSync(config, `database:\n  url: ${db.url}\nmigrations:\n  statement_lock_timeout: ${statementLockTimeout}\n`)
      const app = await db.sql.reserve()
      await app`begin`
      await app`lock table app_table in access share mode`
      return {db, config, app}
    }

    /** Runs the locking fixture until tw-db announces its first retry (or ends). */
    const migrateUntilFirstRetry = async (config: string) => {
      const child = spawnCli(['migrate', '--config', config, '--migrations-dir', path.join(FIXTURES, 'locking')])
      const run = collect(child)
      await new Promise<void>((resolve) => {
        child.stderr!.on('data', (chunk) => String(chunk).includes('Retry 1/3') && resolve())
        child.once('close', () => resolve())
      })
      return {child, run}
    }

    it('applies each migration exactly once when four runs start together', async () => {
      const db = await freshDb()
      const runs = await Promise.all([1, 2, 3, 4].map(() => collect(spawnCli(['migrate', '--database-url', db.url, '--json']))))
      for (const run of runs) assert.equal(run.code, 0, run.stderr)
      const appliedIds = runs.flatMap((run) => parseJson(run).applied.map((a: {id: string}) => a.id))
      assert.deepEqual(appliedIds.sort(), [...BUNDLED_IDS].sort())
      assert.deepEqual((await ledgerRows(db.sql)).map((r) => r.id), BUNDLED_IDS)
    })

    it('names the holder of the migration lock and gives up after --lock-timeout', async () => {
      const db = await freshDb()
      const holder = await db.sql.reserve()
      try {
        await holder`set application_name = 'deploy-blocker'`
        await holder`select pg_advisory_lock(500215669858)`
        const [{pid}] = await holder`select pg_backend_pid() as pid`
        const result = await runCli(['migrate', '--database-url', db.url, '--lock-timeout', '1'])
        assert.equal(result.code, 1)
        assert.match(result.stderr, new RegExp(`Waiting up to 1 s for the migration lock held by pid ${pid} \\(application_name "deploy-blocker"`))
        assert.match(result.stderr, /Error: another migrate run holds the migration lock/)
        assert.equal(await tableExists(db.sql, '_migrations_applied'), false)
      } finally {
        await holder`select pg_advisory_unlock_all()`
        holder.release()
      }
    })

    it('retries a migration whose lock_timeout expired behind application traffic', async () => {
      const {db, config, app} = await lockedByApplication(0.3)
      try {
        const {run} = await migrateUntilFirstRetry(config)
        // The first attempt has timed out and been announced: the application finishes.
        await app`commit`
        const result = await run
        assert.equal(result.code, 0, result.stderr)
        assert.match(result.stderr, /Retry 1\/3 of alter_app_table in 1\.00 s: canceling statement due to lock timeout/)
        assert.deepEqual(await columnsOf(db.sql, 'app_table').then((cols) => cols.map((c) => c.name)), ['id', 'added_by_migration'])
        // The next migration was sent behind the one that timed out: it must have waited for the retry.
        assert.deepEqual([...(await db.sql`select columns from app_columns_seen`)], [{columns: 2}])
        assert.deepEqual((await ledgerRows(db.sql)).map((r) => r.id), ['alter_app_table', 'count_app_columns'])
      } finally {
        app.release()
      }
    })

    it('cancels, rolls back and releases the lock on Ctrl-C while a migration waits behind the application', async () => {
      const {db, config, app} = await lockedByApplication(60)
      try {
        const child = spawnCli(['migrate', '--config', config, '--migrations-dir', path.join(FIXTURES, 'locking')])
        const run = collect(child)
        await waitUntil(() => twDbWaitsForALock(db.sql))
        child.kill('SIGINT')
        const result = await run
        assert.equal(result.code, 1)
        assert.match(result.stderr, /Interrupted: cancelling the running migration/)
        assert.match(result.stderr, /Error: interrupted before or while applying alter_app_table: its transaction was rolled back/)
        await app`rollback`
        assert.deepEqual(await ledgerRows(db.sql), [])
        assert.deepEqual((await columnsOf(db.sql, 'app_table')).map((c) => c.name), ['id'])
        assert.equal(await tableExists(db.sql, 'app_columns_seen'), false, 'nothing after the interrupted migration may run')
        const [{locks}] = await db.sql`select count(*)::int as locks from pg_locks where locktype = 'advisory'`
        assert.equal(locks, 0, 'the migration lock must be released')
        const again = await runCli(['migrate', '--config', config, '--migrations-dir', path.join(FIXTURES, 'locking')])
        assert.equal(again.code, 0, again.stderr)
      } finally {
        app.release()
      }
    })

    it('stops on Ctrl-C during the pause before a retry, even once the lock is free', async () => {
      const {db, config, app} = await lockedByApplication(0.3)
      try {
        const {child, run} = await migrateUntilFirstRetry(config)
        // The lock comes free during the pause: a retry would now succeed, so none may be made.
        await app`commit`
        child.kill('SIGINT')
        const result = await run
        assert.equal(result.code, 1)
        assert.match(result.stderr, /Error: interrupted before or while applying alter_app_table/)
        assert.deepEqual(await ledgerRows(db.sql), [])
        assert.deepEqual((await columnsOf(db.sql, 'app_table')).map((c) => c.name), ['id'])
        assert.equal(await tableExists(db.sql, 'app_columns_seen'), false)
      } finally {
        app.release()
      }
    })

    it('fails with exit 1 after three lock_timeout retries when the lock never comes free', async () => {
      const {db, config, app} = await lockedByApplication(0.1)
      try {
        const result = await runCli(['migrate', '--config', config, '--migrations-dir', path.join(FIXTURES, 'locking')])
        assert.equal(result.code, 1)
        assert.match(result.stderr, /Retry 3\/3/)
        assert.match(result.stderr, /SQLSTATE 55P03/)
        await app`rollback`
        assert.deepEqual(await ledgerRows(db.sql), [])
        assert.equal(await tableExists(db.sql, 'app_columns_seen'), false, 'nothing after the failed migration may run')
      } finally {
        app.release()
      }
    })
  })
}
