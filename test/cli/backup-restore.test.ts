import assert from 'node:assert/strict'
import {execFileSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {chmodSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {describe, it} from 'node:test'

import {PG_DUMP, PG_DUMP_MAJOR, dataChecksum, runInTerminal, runToFile, seededDatabase} from '../support/backup.js'
import {BIN, collect, parseJson, runCli, spawnCli, waitUntil} from '../support/cli.js'
import {testMajors, useServers} from '../support/postgres.js'
import {ledgerRows, tableExists, twDbWaitsForALock} from '../support/schema.js'
import {temporaryDirectory} from '../support/temp.js'

const servers = useServers()

for (const major of testMajors()) {
  if (major > PG_DUMP_MAJOR) {
    describe(`backup on PostgreSQL ${major}, newer than the installed pg_dump ${PG_DUMP_MAJOR}`, () => {
      it('fails with exit 1 naming the server version, every pg_dump found and the fix, leaving no file', async () => {
        const db = await seededDatabase(servers.get(major)!)
        const dir = temporaryDirectory()
        const output = path.join(dir, 'backup.dump')
        const result = await runCli(['backup', '--database-url', db.url, '-F', 'custom', '-o', output])
        assert.equal(result.code, 1)
        assert.match(result.stderr, new RegExp(`^Error: no pg_dump can handle PostgreSQL ${major}\\.\\d+: it needs pg_dump ${major} or newer; found: .*pg_dump \\(${PG_DUMP_MAJOR}\\.\\d+\\)`, 'm'))
        assert.match(result.stderr, new RegExp(`Hint: Install the PostgreSQL ${major} client`))
        assert.deepEqual(readdirSync(dir), [])
        const json = parseJson(await runCli(['backup', '--database-url', db.url, '-o', output, '--json']))
        assert.equal(json.error.code, 'E_PG_TOOL')
      })

      it('runs a wrapper that fits instead of the one real pg_dump it started while the versions were asked', async () => {
        const db = await seededDatabase(servers.get(major)!)
        // A differently named program behind a pg_dump link, as Debian's pg_wrapper: asked only when no real binary fits.
        const bin = temporaryDirectory()
        const wrapper = path.join(temporaryDirectory(), 'newer-wrapper')
        const dump = '-- dumped by the wrapper\n-- PostgreSQL database dump complete\n'
        writeFileSync(wrapper, `#!/bin/sh\n[ "$1" = --version ] && { echo 'pg_dump (PostgreSQL) 99.0'; exit 0; }\ncat <<'EOF'\n${dump}EOF\n`)
        chmodSync(wrapper, 0o755)
        symlinkSync(wrapper, path.join(bin, 'pg_dump'))
        const env = {PG_BIN_DIR: bin}
        const dir = temporaryDirectory()
        const toFile = await runCli(['backup', '--database-url', db.url, '-o', path.join(dir, 'out.sql')], {env})
        assert.equal(toFile.code, 0, toFile.stderr)
        assert.match(toFile.stderr, new RegExp(`Backup complete: .*\\(pg_dump 99\\.0, server ${major}\\.\\d+\\)`))
        assert.equal(readFileSync(path.join(dir, 'out.sql'), 'utf8'), dump)
        assert.deepEqual(readdirSync(dir), ['out.sql'])
        const toStdout = await runToFile(['backup', '--database-url', db.url], path.join(dir, 'stdout.sql'), {env})
        assert.equal(toStdout.code, 0, toStdout.stderr)
        assert.equal(readFileSync(path.join(dir, 'stdout.sql'), 'utf8'), dump)
      })
    })
    continue
  }

  describe(`backup and restore on PostgreSQL ${major}`, () => {
    it('round-trips plain SQL through a pipe: backup > file, restore < file', async () => {
      const source = await seededDatabase(servers.get(major)!)
      const target = await servers.get(major)!.createDatabase()
      const file = path.join(temporaryDirectory(), 'dump.sql')
      const dumped = await runToFile(['backup', '--database-url', source.url], file)
      assert.equal(dumped.code, 0, dumped.stderr)
      assert.match(dumped.stderr, /Backup complete: plain format, streamed to stdout, .*last applied migration: drop_tenant_kv_expires_at/)
      assert.match(readFileSync(file, 'utf8'), /-- PostgreSQL database dump complete/)

      const restored = await runCli(['restore', '--database-url', target.url], {input: readFileSync(file, 'utf8')})
      assert.equal(restored.code, 0, restored.stderr)
      assert.match(restored.stderr, /Restored plain backup from standard input/)
      assert.match(restored.stdout, /5 applied, 0 pending/)
      assert.equal(await dataChecksum(target.sql), await dataChecksum(source.sql))
      assert.deepEqual((await ledgerRows(target.sql)).map((r) => r.id), (await ledgerRows(source.sql)).map((r) => r.id))
    })

    for (const [format, args, name, detected] of [
      ['custom', ['-F', 'custom'], 'tw.dump', 'custom'],
      ['directory', ['-F', 'directory'], 'tw.dir', 'directory'],
      ['tar', ['-F', 'tar'], 'tw.tar', 'tar'],
      ['gzip-compressed plain', ['-Z', '6'], 'tw.sql.gz', 'gzip'],
    ] as const) {
      it(`round-trips the ${format} format through --output, written with mode 0600`, async () => {
        const source = await seededDatabase(servers.get(major)!)
        const target = await servers.get(major)!.createDatabase()
        const dir = temporaryDirectory()
        const output = path.join(dir, name)
        const dumped = await runCli(['backup', '--database-url', source.url, ...args, '-o', output, '--json'])
        assert.equal(dumped.code, 0, dumped.stderr)
        const json = parseJson(dumped)
        assert.equal(json.output, output)
        assert.equal(json.lastMigration, 'drop_tenant_kv_expires_at')
        assert.ok(json.bytes > 0)
        assert.deepEqual(readdirSync(dir), [name], 'no temporary file left beside the backup')
        if (format !== 'directory') assert.equal(statSync(output).mode & 0o777, 0o600)

        const restored = await runCli(['restore', output, '--database-url', target.url, '--json'])
        assert.equal(restored.code, 0, restored.stderr)
        const report = parseJson(restored)
        assert.equal(report.restore.format, detected)
        assert.deepEqual(report.status.summary, {applied: 5, pending: 0, modified: 0, unknown: 0})
        assert.equal(await dataChecksum(target.sql), await dataChecksum(source.sql))
      })
    }

    it('restores all or nothing: an error in the middle leaves the target as it was, even with --clean', async () => {
      const source = await seededDatabase(servers.get(major)!)
      const file = path.join(temporaryDirectory(), 'dump.sql')
      assert.equal((await runToFile(['backup', '--database-url', source.url], file)).code, 0)
      const broken = readFileSync(file, 'utf8').replace('COPY public.tenant_state', 'SELECT no_such_function();\nCOPY public.tenant_state')
      writeFileSync(file, broken)

      const empty = await servers.get(major)!.createDatabase()
      const intoEmpty = await runCli(['restore', file, '--database-url', empty.url])
      assert.equal(intoEmpty.code, 1)
      assert.match(intoEmpty.stderr, /Error: restore failed: psql .* exited with status 3: .*no_such_function/)
      assert.equal(await tableExists(empty.sql, 'tenant_kv'), false)

      const populated = await seededDatabase(servers.get(major)!)
      const before = await dataChecksum(populated.sql)
      const clean = await runCli(['restore', file, '--clean', '--database-url', populated.url])
      assert.equal(clean.code, 1)
      assert.equal(await dataChecksum(populated.sql), before, '--clean must roll back together with the failed restore')
    })

    it('restores a backup holding a large object all or nothing too, plain and archived', async () => {
      // pg_dump wraps large objects' data in its own BEGIN and COMMIT; a failure after them (the
      // materialized view's REFRESH, which needs a setting the backup does not carry) must undo them too.
      const source = await seededDatabase(servers.get(major)!)
      await source.sql`select lo_from_bytea(0, 'large object')`
      await source.sql.begin(async (tx) => {
        await tx`set local tw.test_setting = '1'`
        await tx`create materialized view needs_setting as select current_setting('tw.test_setting')::int as x`
      })
      const largeObjects = async (sql: typeof source.sql) => (await sql`select count(*)::int as n from pg_largeobject_metadata`)[0].n
      const dir = temporaryDirectory()
      for (const format of ['plain', 'custom']) {
        const file = path.join(dir, `with-lo.${format}`)
        assert.equal((await runCli(['backup', '--database-url', source.url, '--format', format, '--output', file])).code, 0)

        const empty = await servers.get(major)!.createDatabase()
        const intoEmpty = await runCli(['restore', file, '--clean', '--database-url', empty.url])
        assert.equal(intoEmpty.code, 1, intoEmpty.stderr)
        assert.match(intoEmpty.stderr, /tw\.test_setting/)
        assert.equal(await tableExists(empty.sql, 'tenant_kv'), false, format)
        assert.equal(await largeObjects(empty.sql), 0, format)

        const populated = await seededDatabase(servers.get(major)!)
        const before = await dataChecksum(populated.sql)
        assert.equal((await runCli(['restore', file, '--clean', '--database-url', populated.url])).code, 1)
        assert.equal(await dataChecksum(populated.sql), before, format)
        assert.equal(await largeObjects(populated.sql), 0, format)
      }
      const plain = path.join(dir, 'with-lo.plain')
      const intoEmptyPlain = await servers.get(major)!.createDatabase()
      assert.equal((await runCli(['restore', plain, '--database-url', intoEmptyPlain.url])).code, 1)
      assert.equal(await tableExists(intoEmptyPlain.sql, 'tenant_kv'), false)
      assert.equal(await largeObjects(intoEmptyPlain.sql), 0)
    })

    it('stops psql and rolls back when tw-db alone gets SIGINT during a restore', async () => {
      const source = await seededDatabase(servers.get(major)!)
      const file = path.join(temporaryDirectory(), 'dump.sql')
      assert.equal((await runToFile(['backup', '--database-url', source.url], file)).code, 0)
      const target = await seededDatabase(servers.get(major)!)
      await target.sql`update tenant_state set banned = not banned`
      const before = await dataChecksum(target.sql)
      const tools = async () => (await target.sql`select count(*)::int as n from pg_stat_activity where application_name = 'tw-db' and datname = current_database()`)[0].n
      // A reader of tenant_state holds up the --clean reset, so psql is still at work when the signal comes.
      const holder = await target.sql.reserve()
      const ownTmp = temporaryDirectory()
      try {
        await holder`begin`
        await holder`select count(*) from tenant_state`
        const child = spawnCli(['restore', file, '--clean', '--database-url', target.url], {env: {TMPDIR: ownTmp}})
        const run = collect(child)
        await waitUntil(() => twDbWaitsForALock(target.sql))
        child.kill('SIGINT')
        const result = await run
        assert.equal(result.code, 1, result.stderr)
        assert.match(result.stderr, /^Error: restore interrupted: nothing was restored$/m)
      } finally {
        await holder`commit`
        holder.release()
      }
      await waitUntil(async () => (await tools()) === 0)
      assert.equal(await dataChecksum(target.sql), before)
      assert.deepEqual(readdirSync(ownTmp), [], 'the restore left its temporary files behind')
    })

    it('refuses a non-empty target without --clean (exit 2, nothing touched), and replaces it with --clean', async () => {
      const source = await seededDatabase(servers.get(major)!)
      const file = path.join(temporaryDirectory(), 'dump.sql')
      assert.equal((await runToFile(['backup', '--database-url', source.url], file)).code, 0)
      const target = await servers.get(major)!.createDatabase()
      await target.sql`create table keep_me (id int)`
      await target.sql`insert into keep_me values (42)`

      const refused = await runCli(['restore', file, '--database-url', target.url])
      assert.equal(refused.code, 2)
      assert.match(refused.stderr, /the target database .* is not empty \(1 user tables/)
      assert.equal(await tableExists(target.sql, 'tenant_kv'), false)

      const clean = await runCli(['restore', file, '--clean', '--database-url', target.url])
      assert.equal(clean.code, 0, clean.stderr)
      assert.equal(await tableExists(target.sql, 'keep_me'), false)
      assert.equal(await dataChecksum(target.sql), await dataChecksum(source.sql))
    })

    it('refuses a truncated plain dump before touching anything, unless --force', async () => {
      const source = await seededDatabase(servers.get(major)!)
      const file = path.join(temporaryDirectory(), 'dump.sql')
      assert.equal((await runToFile(['backup', '--database-url', source.url], file)).code, 0)
      const whole = readFileSync(file, 'utf8')
      writeFileSync(file, whole.slice(0, whole.indexOf('COPY public.tenant_kv')))
      const target = await servers.get(major)!.createDatabase()
      const result = await runCli(['restore', file, '--database-url', target.url])
      assert.equal(result.code, 1)
      assert.match(result.stderr, /is truncated: it lacks pg_dump's closing line/)
      assert.equal(await tableExists(target.sql, 'tenant_kv'), false)

      const forced = await runCli(['restore', file, '--force', '--database-url', target.url])
      assert.equal(forced.code, 0, forced.stderr)
      assert.equal(await tableExists(target.sql, 'tenant_kv'), true)
    })

    it('refuses to write a backup to a terminal (exit 2)', async () => {
      const source = await seededDatabase(servers.get(major)!)
      const result = await runInTerminal(`${process.execPath} ${BIN} backup --database-url ${source.url}`, '')
      assert.equal(result.code, 2)
      assert.match(result.output, /Error: refusing to write a backup to a terminal/)
    })

    it('shows the bytes written while it runs when stderr is a terminal', async () => {
      const source = await seededDatabase(servers.get(major)!)
      const output = path.join(temporaryDirectory(), 'tw.dump')
      const result = await runInTerminal(`${process.execPath} ${BIN} backup -F custom -o ${output} --database-url ${source.url}`, '')
      assert.equal(result.code, 0, result.output)
      assert.match(result.output, /Backing up: \d+(\.\d)? ?[kMG]?B written/)
      assert.match(result.output, /Backup complete: custom format, \d+\.\d kB in /)
    })
  })
}

// tw-db flushes a backup file to disk every 64 MB while pg_dump writes it; the flushes must not change a byte.
const flushMajor = testMajors().find((major) => major <= PG_DUMP_MAJOR)
if (flushMajor !== undefined) {
  describe(`a backup file larger than the flush interval, on PostgreSQL ${flushMajor}`, () => {
    it('is exactly what pg_dump writes', async () => {
      const db = await servers.get(flushMajor)!.createDatabase()
      await db.sql`create table big as select g as id, repeat(md5(g::text), 20) as payload from generate_series(1, 130000) as g`
      const dir = temporaryDirectory()
      const ours = path.join(dir, 'tw-db.sql')
      const result = await runCli(['backup', '--database-url', db.url, '-o', ours])
      assert.equal(result.code, 0, result.stderr)
      const reference = path.join(dir, 'pg_dump.sql')
      execFileSync(PG_DUMP, ['--format', 'plain', '--file', reference, '--dbname', db.url])
      // pg_dump opens and closes every plain dump with a \restrict key it draws at random.
      const sha256 = (file: string) => createHash('sha256').update(readFileSync(file, 'utf8').replace(/^\\(un)?restrict \S+$/gm, '')).digest('hex')
      assert.ok(statSync(ours).size > 64 * 1024 * 1024, `the dump is ${statSync(ours).size} bytes, not over the 64 MB flush interval`)
      assert.equal(sha256(ours), sha256(reference))
    })
  })
}
