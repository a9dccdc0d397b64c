import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {parseJson, runCli} from '../support/cli.js'
import {startServer, testMajors, useServers} from '../support/postgres.js'
import {tableExists} from '../support/schema.js'

const servers = useServers()

for (const major of testMajors()) {
  describe(`status on PostgreSQL ${major}`, () => {
    it('shows everything pending on a database without ledger, and leaves it without one', async () => {
      const db = await servers.get(major)!.createDatabase()
      const result = await runCli(['status', '--database-url', db.url])
      assert.equal(result.code, 0, result.stderr)
      for (const header of ['#', 'ID', 'Description', 'State', 'Applied at', 'Duration', 'Checksum']) {
        assert.ok(result.stdout.includes(` ${header} `), `column ${header}`)
      }
      assert.equal(result.stdout.match(/ pending /g)?.length, 5)
      assert.match(result.stdout, /0 applied, 5 pending/)
      assert.equal(await tableExists(db.sql, '_migrations_applied'), false)

      const check = await runCli(['status', '--database-url', db.url, '--check'])
      assert.equal(check.code, 3)
      assert.match(check.stderr, /Not up to date: 5 pending, 0 modified, 0 unknown/)
      assert.equal(await tableExists(db.sql, '_migrations_applied'), false)
    })

    it('prints the documented JSON document', async () => {
      const db = await servers.get(major)!.createDatabase()
      await runCli(['migrate', '--database-url', db.url, '--target', 'kv_generic'])
      const result = await runCli(['status', '--database-url', db.url, '--json'])
      assert.equal(result.code, 0, result.stderr)
      const json = parseJson(result)
      assert.deepEqual(Object.keys(json).sort(), ['migrations', 'summary'])
      assert.deepEqual(json.summary, {applied: 2, pending: 3, modified: 0, unknown: 0})
      const [first, , third] = json.migrations
      assert.deepEqual(Object.keys(first).sort(), ['appliedAt', 'checksum', 'description', 'durationMs', 'id', 'recordedChecksum', 'state'])
      assert.equal(first.id, 'khronosvalue_v2')
      assert.equal(first.state, 'applied')
      assert.equal(first.checksum, first.recordedChecksum)
      assert.match(first.checksum, /^[0-9a-f]{64}$/)
      assert.ok(!Number.isNaN(Date.parse(first.appliedAt)))
      assert.equal(typeof first.durationMs, 'number')
      assert.deepEqual(
        {id: third.id, state: third.state, appliedAt: third.appliedAt, durationMs: third.durationMs, recordedChecksum: third.recordedChecksum},
        {id: 'tenantstate', state: 'pending', appliedAt: null, durationMs: null, recordedChecksum: null},
      )

      const check = await runCli(['status', '--database-url', db.url, '--json', '--check'])
      assert.equal(check.code, 3)
      assert.deepEqual(parseJson(check).summary, json.summary, '--check --json still prints the document')
    })

    it('passes --check once everything is applied, and works on a read-only database', async () => {
      const db = await servers.get(major)!.createDatabase()
      assert.equal((await runCli(['migrate', '--database-url', db.url])).code, 0)
      // A hot standby refuses writes the same way: status must not need any.
      await db.sql.unsafe(`alter database ${db.name} set default_transaction_read_only = on`)
      const result = await runCli(['status', '--database-url', db.url, '--check'])
      assert.equal(result.code, 0, result.stderr)
      assert.match(result.stdout, /5 applied, 0 pending/)
      assert.equal(result.stdout.match(/ applied /g)?.length, 5)
      // The checksum column shows the first 12 hex characters.
      assert.match(result.stdout, / [0-9a-f]{12} /)
    })

    it('reads a standby, where migrate refuses to run (exit 1) and changes nothing', async () => {
      const standby = await startServer(major, {standby: true})
      try {
        const [{recovering}] = await standby.admin`select pg_is_in_recovery() as recovering`
        assert.equal(recovering, true)
        const status = await runCli(['status', '--database-url', standby.adminUrl, '--json'])
        assert.equal(status.code, 0, status.stderr)
        assert.equal(parseJson(status).summary.pending, 5)
        const migrate = await runCli(['migrate', '--database-url', standby.adminUrl])
        assert.equal(migrate.code, 1)
        assert.match(migrate.stderr, /Error: the database is a standby \(pg_is_in_recovery\(\) is true\)/)
        assert.match(migrate.stderr, /Hint: Point tw-db at the primary server/)
        const dryRun = await runCli(['migrate', '--database-url', standby.adminUrl, '--dry-run'])
        assert.equal(dryRun.code, 1)
      } finally {
        await standby.stop()
      }
    })
  })
}
