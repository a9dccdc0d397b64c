import assert from 'node:assert/strict'
import {appendFileSync, cpSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {describe, it} from 'node:test'

import {FIXTURES, parseJson, runCli} from '../support/cli.js'
import {useServers, testMajors, type TestDatabase} from '../support/postgres.js'
import {columnsOf, ledgerRows, tableExists} from '../support/schema.js'
import {temporaryDirectory} from '../support/temp.js'

const BUNDLED_IDS = ['khronosvalue_v2', 'kv_generic', 'tenantstate', 'cleanup_v8', 'drop_tenant_kv_expires_at']
const servers = useServers()

function copyFixture(name: string): string {
  const dir = temporaryDirectory(`tw-db-${name}-`)
  cpSync(path.join(FIXTURES, name), dir, {recursive: true})
  return dir
}

for (const major of testMajors()) {
  describe(`migrate on PostgreSQL ${major}`, () => {
    const freshDb = (): Promise<TestDatabase> => servers.get(major)!.createDatabase()

    it('brings an empty database to the final schema of all five migrations', async () => {
      const db = await freshDb()
      const result = await runCli(['migrate', '--database-url', db.url])
      assert.equal(result.code, 0, result.stderr)
      for (const id of BUNDLED_IDS) assert.match(result.stdout, new RegExp(`${id} \\(\\d+ ms\\)`))
      assert.match(result.stdout, /Applied 5 migrations in \d+\.\d\d s/)

      assert.deepEqual(await columnsOf(db.sql, 'tenant_kv'), [
        {name: 'id', type: 'text', nullable: false, default: '(uuid_generate_v4())::text'},
        {name: 'owner_id', type: 'text', nullable: false, default: null},
        {name: 'key', type: 'text', nullable: false, default: null},
        {name: 'value', type: 'jsonb', nullable: false, default: "'null'::jsonb"},
        {name: 'scopes', type: 'text[]', nullable: false, default: "'{}'::text[]"},
        {name: 'created_at', type: 'timestamp with time zone', nullable: false, default: 'now()'},
        {name: 'last_updated_at', type: 'timestamp with time zone', nullable: false, default: 'now()'},
        {name: 'owner_type', type: 'text', nullable: false, default: "'guild'::text"},
      ])
      assert.deepEqual(await columnsOf(db.sql, 'tenant_state'), [
        {name: 'owner_id', type: 'text', nullable: false, default: null},
        {name: 'owner_type', type: 'text', nullable: false, default: null},
        {name: 'events', type: 'text[]', nullable: false, default: "'{}'::text[]"},
        {name: 'banned', type: 'boolean', nullable: false, default: 'false'},
        {name: 'data', type: 'jsonb', nullable: false, default: "'{}'::jsonb"},
      ])
      assert.deepEqual(await columnsOf(db.sql, '_migrations_applied'), [
        {name: 'id', type: 'text', nullable: false, default: null},
        {name: 'applied_at', type: 'timestamp with time zone', nullable: false, default: 'now()'},
        {name: 'checksum', type: 'text', nullable: true, default: null},
        {name: 'duration_ms', type: 'integer', nullable: true, default: null},
        {name: 'applied_by', type: 'text', nullable: true, default: null},
      ])
      const [constraint] = await db.sql`
        select pg_get_constraintdef(oid) as def from pg_constraint where conname = 'kv_unique_entry'`
      assert.equal(constraint.def, 'UNIQUE (owner_id, owner_type, key, scopes)')
      const [pk] = await db.sql`
        select pg_get_constraintdef(oid) as def from pg_constraint where conrelid = 'tenant_state'::regclass and contype = 'p'`
      assert.equal(pk.def, 'PRIMARY KEY (owner_id, owner_type)')
      assert.equal(await tableExists(db.sql, 'guild_templates_kv'), false)

      const rows = await ledgerRows(db.sql)
      assert.deepEqual(rows.map((r) => r.id), BUNDLED_IDS)
      for (const row of rows) {
        assert.match(row.checksum!, /^[0-9a-f]{64}$/)
        assert.equal(typeof row.duration_ms, 'number')
        assert.match(row.applied_by!, /^tw-db \d+\.\d+\.\d+/)
      }
      // The table works for the worker: the uuid default and the new unique key.
      await db.sql`insert into tenant_kv (owner_id, key, value) values ('g1', 'k', '{"Null": null}')`
      const [kv] = await db.sql`select id, owner_type from tenant_kv`
      assert.match(kv.id, /^[0-9a-f-]{36}$/)
      assert.equal(kv.owner_type, 'guild')
    })

    it(major >= 13
      ? 'migrates as a non-superuser owner: uuid-ossp is a trusted extension from PostgreSQL 13'
      : 'fails clearly as a non-superuser before PostgreSQL 13, where only a superuser may create uuid-ossp', async () => {
      const db = await freshDb()
      const result = await runCli(['migrate', '--database-url', db.passwordUrl])
      if (major >= 13) {
        assert.equal(result.code, 0, result.stderr)
        assert.equal((await ledgerRows(db.sql)).length, 5)
      } else {
        assert.equal(result.code, 1)
        assert.match(result.stderr, /^Error: migration khronosvalue_v2 failed at 0001_khronosvalue_v2\.sql: permission denied to create extension "uuid-ossp" \(SQLSTATE 42501\)/m)
        assert.match(result.stderr, /Must be superuser to create this extension/)
        assert.equal(await tableExists(db.sql, 'guild_templates_kv'), false)
        // The documented fix: a superuser installs the extension once, then the owner migrates.
        await db.sql`create extension "uuid-ossp"`
        const again = await runCli(['migrate', '--database-url', db.passwordUrl])
        assert.equal(again.code, 0, again.stderr)
      }
    })

    it('applies nothing on a second run and says the database is up to date', async () => {
      const db = await freshDb()
      assert.equal((await runCli(['migrate', '--database-url', db.url])).code, 0)
      const before = await ledgerRows(db.sql)
      const again = await runCli(['migrate', '--database-url', db.url, '--json'])
      assert.equal(again.code, 0, again.stderr)
      assert.deepEqual(parseJson(again), {applied: [], pending: [], upToDate: true, dryRun: false})
      assert.deepEqual(await ledgerRows(db.sql), before)
      const human = await runCli(['migrate', '--database-url', db.url])
      assert.equal(human.stdout.trim(), 'Database is up to date')
    })

    for (const [version, earlier] of [
      ['first (plpgsql)', '2766556f009145ec2da65d87795541cf8f5a75cfdad9ea24af35a6a98b823c85'],
      ['second (string_agg)', '248541fe804679ec577b97e6d8d55204c14f72df5746eeffddefd0d50d87dad0'],
    ] as const) {
      it(`keeps a database migrated by the ${version} khronosvalue_v2 file (checksum ${earlier.slice(0, 8)}…) up to date`, async () => {
        const db = await freshDb()
        assert.equal((await runCli(['migrate', '--database-url', db.url])).code, 0)
        await db.sql`update _migrations_applied set checksum = ${earlier} where id = 'khronosvalue_v2'`
        const status = await runCli(['status', '--check', '--json', '--database-url', db.url])
        assert.equal(status.code, 0, status.stderr)
        const [khronos] = parseJson(status).migrations
        assert.equal(khronos.state, 'applied')
        assert.equal(khronos.recordedChecksum, earlier)
        const again = await runCli(['migrate', '--database-url', db.url])
        assert.equal(again.code, 0, again.stderr)
        assert.equal(again.stdout.trim(), 'Database is up to date')
      })
    }

    it('reports applied migrations in the documented JSON shape', async () => {
      const db = await freshDb()
      const result = await runCli(['migrate', '--database-url', db.url, '--json'])
      assert.equal(result.code, 0, result.stderr)
      const json = parseJson(result)
      assert.deepEqual(Object.keys(json).sort(), ['applied', 'dryRun', 'pending', 'upToDate'])
      assert.deepEqual(json.applied.map((a: {id: string}) => a.id), BUNDLED_IDS)
      for (const applied of json.applied) {
        assert.deepEqual(Object.keys(applied).sort(), ['checksum', 'description', 'durationMs', 'id'])
        assert.match(applied.checksum, /^[0-9a-f]{64}$/)
        assert.equal(typeof applied.durationMs, 'number')
      }
      assert.equal(json.upToDate, true)
      assert.deepEqual(json.pending, [])
    })

    it('changes and creates nothing on --dry-run, and prints each pending migration\'s SQL', async () => {
      const db = await freshDb()
      const result = await runCli(['migrate', '--database-url', db.url, '--dry-run'])
      assert.equal(result.code, 0, result.stderr)
      assert.match(result.stdout, /would apply 5 migrations/)
      assert.match(result.stdout, /ALTER TABLE guild_templates_kv RENAME TO tenant_kv;/)
      assert.match(result.stdout, /-- drop_tenant_kv_expires_at: Drop tenant_kv.expires_at/)
      const [{count}] = await db.sql`select count(*)::int as count from pg_class c join pg_namespace n on n.oid = c.relnamespace where n.nspname = 'public'`
      assert.equal(count, 0, 'the database must stay empty, ledger included')
      const [{extensions}] = await db.sql`select count(*)::int as extensions from pg_extension where extname = 'uuid-ossp'`
      assert.equal(extensions, 0)

      const json = parseJson(await runCli(['migrate', '--database-url', db.url, '--dry-run', '--target', 'kv_generic', '--json']))
      assert.deepEqual(json.planned.map((p: {id: string}) => p.id), ['khronosvalue_v2', 'kv_generic'])
      assert.equal(json.dryRun, true)
      assert.deepEqual(json.applied, [])
    })

    it('stops after --target and leaves the rest pending', async () => {
      const db = await freshDb()
      const result = await runCli(['migrate', '--database-url', db.url, '--target', 'kv_generic', '--json'])
      assert.equal(result.code, 0, result.stderr)
      const json = parseJson(result)
      assert.deepEqual(json.applied.map((a: {id: string}) => a.id), ['khronosvalue_v2', 'kv_generic'])
      assert.deepEqual(json.pending, ['tenantstate', 'cleanup_v8', 'drop_tenant_kv_expires_at'])
      assert.equal(json.upToDate, false)
      assert.deepEqual((await ledgerRows(db.sql)).map((r) => r.id), ['khronosvalue_v2', 'kv_generic'])
      assert.equal(await tableExists(db.sql, 'tenant_state'), false)

      const unknownTarget = await runCli(['migrate', '--database-url', db.url, '--target', 'no_such_id'])
      assert.equal(unknownTarget.code, 2)
      assert.match(unknownTarget.stderr, /unknown --target "no_such_id"/)

      const rest = await runCli(['migrate', '--database-url', db.url])
      assert.equal(rest.code, 0, rest.stderr)
      assert.match(rest.stdout, /Applied 3 migrations/)
    })

    it('finishes a database the Rust worker migrated part-way, keeping its ledger rows', async () => {
      const db = await freshDb()
      assert.equal((await runCli(['migrate', '--database-url', db.url, '--target', 'tenantstate'])).code, 0)
      // Make the ledger exactly what the Rust worker writes: (id, applied_at), ids only.
      await db.sql`drop table _migrations_applied`
      await db.sql`create table _migrations_applied (id text primary key, applied_at timestamptz not null default now())`
      await db.sql`insert into _migrations_applied (id) values ('khronosvalue_v2'), ('kv_generic'), ('tenantstate')`

      const status = parseJson(await runCli(['status', '--database-url', db.url, '--json']))
      assert.deepEqual(status.migrations.map((m: {state: string}) => m.state), ['applied', 'applied', 'applied', 'pending', 'pending'])
      assert.equal(status.migrations[0].recordedChecksum, null)
      const human = await runCli(['status', '--database-url', db.url])
      assert.match(human.stdout, /khronosvalue_v2 .* applied .* - +│\n/)

      const result = await runCli(['migrate', '--database-url', db.url, '--json'])
      assert.equal(result.code, 0, result.stderr)
      assert.deepEqual(parseJson(result).applied.map((a: {id: string}) => a.id), ['cleanup_v8', 'drop_tenant_kv_expires_at'])
      const rows = await ledgerRows(db.sql)
      assert.deepEqual(rows.map((r) => [r.id, r.checksum === null]), [
        ['khronosvalue_v2', true],
        ['kv_generic', true],
        ['tenantstate', true],
        ['cleanup_v8', false],
        ['drop_tenant_kv_expires_at', false],
      ])
      // The Rust worker inserts only ids: that must keep working on the widened ledger.
      await db.sql`insert into _migrations_applied (id) values ('some_future_rust_migration')`
      const after = parseJson(await runCli(['status', '--database-url', db.url, '--json']))
      assert.equal(after.migrations.at(-1).state, 'unknown')
      assert.deepEqual(after.summary, {applied: 5, pending: 0, modified: 0, unknown: 1})
      const withUnknown = await runCli(['migrate', '--database-url', db.url])
      assert.equal(withUnknown.code, 0, withUnknown.stderr)
      assert.match(withUnknown.stderr, /Warning: the ledger records migration this tw-db does not know \(some_future_rust_migration\)/)
    })

    it('rolls back a failing migration, runs nothing after it, and points at file:line:col', async () => {
      const db = await freshDb()
      const dir = path.join(FIXTURES, 'failing')
      const result = await runCli(['migrate', '--database-url', db.url, '--migrations-dir', dir])
      assert.equal(result.code, 1)
      assert.match(result.stderr, /Error: migration broken failed at 0002_broken\.sql:4:31: relation "no_such_table" does not exist \(SQLSTATE 42P01\)/)
      assert.match(result.stderr, /4 \| UPDATE a SET id = id \+ 1 FROM no_such_table WHERE true;/)
      assert.match(result.stdout, /create_a/)
      assert.equal(await tableExists(db.sql, 'b'), false, 'the failed migration must leave nothing behind')
      assert.equal(await tableExists(db.sql, 'c'), false, 'later migrations must not run')
      assert.deepEqual((await ledgerRows(db.sql)).map((r) => r.id), ['create_a'])

      const json = await runCli(['migrate', '--database-url', db.url, '--migrations-dir', dir, '--json'])
      assert.equal(json.code, 1)
      const doc = parseJson(json)
      assert.equal(doc.error.code, 'E_MIGRATION_FAILED')
      assert.equal(doc.error.failed, 'broken')
      assert.deepEqual(doc.error.notRun, ['after'])
    })

    it('applies nothing at all with --single-transaction when one migration fails', async () => {
      const db = await freshDb()
      const result = await runCli(['migrate', '--database-url', db.url, '--migrations-dir', path.join(FIXTURES, 'failing'), '--single-transaction'])
      assert.equal(result.code, 1)
      assert.match(result.stderr, /migration broken failed at 0002_broken\.sql:4:31: relation "no_such_table" does not exist/)
      assert.equal(await tableExists(db.sql, 'a'), false)
      assert.deepEqual(await ledgerRows(db.sql), [])
    })

    it('blames a ledger row that fails on its migration, without a line in its file, and runs nothing after it', async () => {
      const dir = temporaryDirectory('tw-db-ledger-fails-')
      writeFileSync(path.join(dir, '0001_drop_ledger.sql'), '-- description: Drop the ledger\nDROP TABLE _migrations_applied;\n')
      writeFileSync(path.join(dir, '0002_make_t.sql'), '-- description: Make a table\nCREATE TABLE t_after (id int);\n')
      for (const extra of [[], ['--single-transaction']]) {
        const db = await freshDb()
        const result = await runCli(['migrate', '--database-url', db.url, '--migrations-dir', dir, '--json', ...extra])
        assert.equal(result.code, 1)
        const doc = parseJson(result)
        assert.equal(doc.error.code, 'E_MIGRATION_FAILED')
        assert.equal(doc.error.failed, 'drop_ledger')
        // The insert's error position is in tw-db's own query, not in the migration file.
        assert.match(doc.error.message, /^migration drop_ledger failed at 0001_drop_ledger\.sql: relation "_migrations_applied" does not exist/)
        assert.doesNotMatch(result.stderr, /no transaction in progress/)
        assert.equal(await tableExists(db.sql, 't_after'), false)
        assert.equal(await tableExists(db.sql, '_migrations_applied'), true, 'the DROP TABLE was rolled back')
        assert.deepEqual(await ledgerRows(db.sql), [])
      }
    })

    it('refuses a migration that would commit its own transaction before anything runs, --dry-run included', async () => {
      const dir = temporaryDirectory('tw-db-commits-')
      writeFileSync(path.join(dir, '0001_commits.sql'), '-- description: Commits midway\nCREATE TABLE half_t (id int);\nCOMMIT;\nCREATE TABLE other_t (id nosuchtype);\n')
      writeFileSync(path.join(dir, '0002_after.sql'), '-- description: After it\nCREATE TABLE after_t (id int);\n')
      for (const extra of [[], ['--single-transaction'], ['--dry-run']]) {
        const db = await freshDb()
        const result = await runCli(['migrate', '--database-url', db.url, '--migrations-dir', dir, ...extra])
        assert.equal(result.code, 1)
        assert.match(result.stderr, /^Error: broken migration registry: .*0001_commits\.sql: line 3: COMMIT would end the transaction/m)
        for (const table of ['half_t', 'after_t', '_migrations_applied']) assert.equal(await tableExists(db.sql, table), false, table)
      }
    })

    it('runs a rule with an action list, and from PostgreSQL 14 a BEGIN ATOMIC function, as single statements outside a transaction', async () => {
      const db = await freshDb()
      const dir = temporaryDirectory('tw-db-nontx-bodies-')
      writeFileSync(
        path.join(dir, '0001_bodies.sql'),
        [
          '-- description: Statements with semicolons inside',
          '-- transaction: false',
          'CREATE TABLE r1 (id int);',
          'CREATE TABLE r2 (id int);',
          'CREATE RULE r1_copy AS ON INSERT TO r1 DO ALSO (INSERT INTO r2 VALUES (NEW.id); INSERT INTO r2 VALUES (NEW.id + 1));',
          // SQL-standard function bodies came with PostgreSQL 14.
          major >= 14 ? 'CREATE FUNCTION two() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END;' : '',
          '',
        ].join('\n'),
      )
      const result = await runCli(['migrate', '--database-url', db.url, '--migrations-dir', dir])
      assert.equal(result.code, 0, result.stderr)
      await db.sql`insert into r1 values (1)`
      assert.deepEqual([...(await db.sql`select id from r2 order by id`)], [{id: 1}, {id: 2}])
      if (major >= 14) assert.deepEqual([...(await db.sql`select two() as two`)], [{two: 2}])
    })

    it('points at file:line:col in the first migration of a run too, and with --single-transaction', async () => {
      const dir = temporaryDirectory('tw-db-first-broken-')
      writeFileSync(path.join(dir, '0001_first_broken.sql'), '-- description: Broken first\nCREATE TABLE first_t (id int);\n  SELEC 1;\n')
      for (const extra of [[], ['--single-transaction']]) {
        const db = await freshDb()
        const result = await runCli(['migrate', '--database-url', db.url, '--migrations-dir', dir, ...extra])
        assert.equal(result.code, 1)
        assert.match(result.stderr, /migration first_broken failed at 0001_first_broken\.sql:3:3: syntax error at or near "SELEC" \(SQLSTATE 42601\)/)
        assert.equal(await tableExists(db.sql, 'first_t'), false)
        assert.deepEqual(await ledgerRows(db.sql), [])
      }
    })

    it('applies a file ending in a comment with no final semicolon or newline, and records the duration it prints', async () => {
      const db = await freshDb()
      const dir = temporaryDirectory('tw-db-endings-')
      writeFileSync(path.join(dir, '0001_no_semicolon.sql'), '-- description: No final semicolon\nCREATE TABLE no_semi (id int) -- the end')
      writeFileSync(path.join(dir, '0002_sleeps.sql'), '-- description: Takes a while\nSELECT pg_sleep(0.2);\n')
      const result = await runCli(['migrate', '--database-url', db.url, '--migrations-dir', dir])
      assert.equal(result.code, 0, result.stderr)
      assert.equal(await tableExists(db.sql, 'no_semi'), true)
      const recorded = await db.sql<Array<{id: string; duration_ms: number}>>`select id, duration_ms from _migrations_applied order by id`
      assert.deepEqual(recorded.map((r) => r.id), ['no_semicolon', 'sleeps'])
      for (const row of recorded) assert.match(result.stdout, new RegExp(`${row.id} \\(${row.duration_ms} ms\\)`))
      assert.ok(recorded[1].duration_ms >= 200, `pg_sleep(0.2) took ${recorded[1].duration_ms} ms`)
    })

    it('refuses to run when an applied migration file was edited, unless --ignore-checksums', async () => {
      const db = await freshDb()
      const dir = copyFixture('nontx')
      assert.equal((await runCli(['migrate', '--database-url', db.url, '--migrations-dir', dir])).code, 0)
      appendFileSync(path.join(dir, '0001_create_t.sql'), '-- an innocent-looking edit\n')
      writeFileSync(path.join(dir, '0003_more.sql'), '-- description: More\nCREATE TABLE more_t (id int);\n')

      const refused = await runCli(['migrate', '--database-url', db.url, '--migrations-dir', dir])
      assert.equal(refused.code, 1)
      assert.match(refused.stderr, /applied migration create_t changed since it was applied/)
      assert.equal(await tableExists(db.sql, 'more_t'), false)

      const status = await runCli(['status', '--database-url', db.url, '--migrations-dir', dir, '--check', '--json'])
      assert.equal(status.code, 3)
      assert.equal(parseJson(status).migrations[0].state, 'modified')

      const forced = await runCli(['migrate', '--database-url', db.url, '--migrations-dir', dir, '--ignore-checksums'])
      assert.equal(forced.code, 0, forced.stderr)
      assert.match(forced.stderr, /ignoring changed checksums of create_t/)
      assert.equal(await tableExists(db.sql, 'more_t'), true)
    })

    it('refuses a pending migration that sorts before an applied one', async () => {
      const db = await freshDb()
      const dir = copyFixture('nontx')
      assert.equal((await runCli(['migrate', '--database-url', db.url, '--migrations-dir', dir])).code, 0)
      writeFileSync(path.join(dir, '0000_early.sql'), '-- description: Too late to be first\nCREATE TABLE early (id int);\n')
      const result = await runCli(['migrate', '--database-url', db.url, '--migrations-dir', dir])
      assert.equal(result.code, 1)
      assert.match(result.stderr, /pending migration early sorts before the applied migration index_concurrently/)
      assert.equal(await tableExists(db.sql, 'early'), false)
    })

    it('runs a "-- transaction: false" migration statement by statement (CREATE INDEX CONCURRENTLY)', async () => {
      const db = await freshDb()
      const result = await runCli(['migrate', '--database-url', db.url, '--migrations-dir', path.join(FIXTURES, 'nontx')])
      assert.equal(result.code, 0, result.stderr)
      const indexes = await db.sql`select indexname from pg_indexes where tablename = 't' order by indexname`
      assert.deepEqual(indexes.map((i) => i.indexname), ['t_id_idx', 't_label_idx'])
      assert.deepEqual((await ledgerRows(db.sql)).map((r) => r.id), ['create_t', 'index_concurrently'])
    })

    it('routes server warnings to stderr, keeping stdout clean and routine notices quiet', async () => {
      const db = await freshDb()
      const result = await runCli(['migrate', '--database-url', db.url, '--json', '--migrations-dir', path.join(FIXTURES, 'notices')])
      assert.equal(result.code, 0, result.stderr)
      assert.deepEqual(parseJson(result).applied.map((a: {id: string}) => a.id), ['warns'])
      assert.match(result.stderr, /^WARNING: tenant_kv has 3 rows without owner$/m)
      assert.doesNotMatch(result.stderr, /routine notice|skipping/)
    })
  })
}
