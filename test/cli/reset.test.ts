import assert from 'node:assert/strict'
import path from 'node:path'
import {describe, it} from 'node:test'

import {PG_DUMP_MAJOR, dataChecksum, runInTerminal, seededDatabase} from '../support/backup.js'
import {BIN, runCli} from '../support/cli.js'
import {testMajors, useServers} from '../support/postgres.js'
import {ledgerRows, tableExists} from '../support/schema.js'
import {temporaryDirectory} from '../support/temp.js'

// reset --backup runs pg_dump, which refuses servers newer than itself.
const majors = testMajors().filter((major) => major <= PG_DUMP_MAJOR)
const servers = useServers(majors)

for (const major of majors) {
  describe(`reset on PostgreSQL ${major}`, () => {
    it('refuses without a terminal unless --force, dropping nothing', async () => {
      const db = await seededDatabase(servers.get(major)!)
      const result = await runCli(['reset', '--database-url', db.url])
      assert.equal(result.code, 2)
      assert.match(result.stderr, /reset needs --force when not run from a terminal; nothing was dropped/)
      assert.equal(await tableExists(db.sql, 'tenant_kv'), true)
    })

    it('asks for the database name on a terminal and drops nothing on a wrong answer', async () => {
      const db = await seededDatabase(servers.get(major)!)
      const command = `${process.execPath} ${BIN} reset --database-url ${db.url}`
      const wrong = await runInTerminal(command, 'postgres\n')
      assert.equal(wrong.code, 2)
      assert.match(wrong.output, /Type the database name \(t_[0-9a-f]+\) to confirm/)
      assert.match(wrong.output, /does not match the database name; nothing was dropped/)
      assert.equal(await tableExists(db.sql, 'tenant_kv'), true)

      const right = await runInTerminal(command, `${db.name}\n`)
      assert.equal(right.code, 0, right.output)
      assert.equal(await tableExists(db.sql, 'tenant_kv'), false)
      assert.equal(await tableExists(db.sql, '_migrations_applied'), false)
    })

    it('--force --migrate empties the database, keeps public\'s owner and grants, and migrates again', async () => {
      const db = await seededDatabase(servers.get(major)!)
      await db.sql`create schema extra`
      await db.sql`create table extra.t (id int)`
      await db.sql`grant usage on schema public to tw_secret_user`
      await db.sql`alter default privileges in schema public grant select on tables to tw_secret_user`
      const aclOf = async () => (await db.sql`
        select pg_get_userbyid(nspowner) as owner, nspacl::text as acl,
          (select array_agg(defaclacl::text) from pg_default_acl d where d.defaclnamespace = n.oid) as defaults
        from pg_namespace n where nspname = 'public'`)[0]
      const before = await aclOf()

      const result = await runCli(['reset', '--force', '--migrate', '--database-url', db.url])
      assert.equal(result.code, 0, result.stderr)
      assert.match(result.stderr, /Reset .*: dropped extra, public; public recreated/)
      assert.match(result.stdout, /Applied 5 migrations/)
      assert.deepEqual(await aclOf(), before)
      assert.equal(await tableExists(db.sql, 'extra.t'), false)
      const [{rows}] = await db.sql`select count(*)::int as rows from tenant_kv`
      assert.equal(rows, 0)
      assert.equal((await ledgerRows(db.sql)).length, 5)
    })

    it('takes a usable backup first with --backup, and refuses to reset when it fails', async () => {
      const db = await seededDatabase(servers.get(major)!)
      const checksum = await dataChecksum(db.sql)
      const refused = await runCli(['reset', '--force', '--backup', '/nonexistent/dir/before.dump', '--database-url', db.url])
      assert.equal(refused.code, 1)
      assert.match(refused.stderr, /reset refused: the backup to \/nonexistent\/dir\/before\.dump failed/)
      assert.equal(await dataChecksum(db.sql), checksum)

      const file = path.join(temporaryDirectory(), 'before.dump')
      const reset = await runCli(['reset', '--force', '--backup', file, '--database-url', db.url])
      assert.equal(reset.code, 0, reset.stderr)
      assert.equal(await tableExists(db.sql, 'tenant_kv'), false)
      const restored = await runCli(['restore', file, '--database-url', db.url])
      assert.equal(restored.code, 0, restored.stderr)
      assert.equal(await dataChecksum(db.sql), checksum)
    })
  })
}
