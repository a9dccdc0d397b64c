/**
 * The embedded database (SPEC.md sections 2 step 5 and 7): the whole flow on
 * PGlite, with no server and no PostgreSQL client tools involved.
 */
import assert from 'node:assert/strict'
import {existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, describe, it} from 'node:test'

import {parseJson, runCli} from '../support/cli.js'
import {noClientTools, queryEmbedded} from '../support/embedded.js'

const cwd = mkdtempSync(path.join(tmpdir(), 'tw-db-embedded-'))
after(() => rmSync(cwd, {recursive: true, force: true}))

const DEFAULT_DIR = path.join(cwd, '.tw-db', 'pglite')

/** A plain dump as pg_dump writes it, of a Template Worker database from before the migrations (v1 values). */
const LEGACY_DUMP = `--
-- PostgreSQL database dump
--

\\restrict 0123456789abcdef
SET statement_timeout = 0;
SET client_encoding = 'UTF8';
SELECT pg_catalog.set_config('search_path', '', false);
SET client_min_messages = warning;

CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA public;

CREATE TABLE public.guild_templates_kv (
    id text DEFAULT (public.uuid_generate_v4())::text NOT NULL,
    guild_id text NOT NULL,
    key text NOT NULL,
    value jsonb DEFAULT 'null'::jsonb NOT NULL,
    scopes text[] DEFAULT '{}'::text[] NOT NULL,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    last_updated_at timestamp with time zone DEFAULT now() NOT NULL,
    expires_at timestamp with time zone,
    resume boolean DEFAULT false NOT NULL,
    expiry_event_call_attempts integer DEFAULT 0 NOT NULL
);

COPY public.guild_templates_kv (id, guild_id, key, value, scopes, created_at, last_updated_at, expires_at, resume, expiry_event_call_attempts) FROM stdin;
k1	g1	settings	{"a": [1, 2.5, "x"], "t": {"value": "UTC", "___khronosValType___": "timezone"}}	{}	2024-01-01 00:00:00+00	2024-01-02 00:00:00+00	\\N	f	0
k2	g1	tab\\tkey	true	{a,b}	2024-01-01 00:00:00+00	2024-01-02 00:00:00+00	\\N	f	0
\\.

ALTER TABLE ONLY public.guild_templates_kv
    ADD CONSTRAINT guild_templates_kv_pkey PRIMARY KEY (id);
ALTER TABLE ONLY public.guild_templates_kv
    ADD CONSTRAINT kv_unique_entry UNIQUE (guild_id, key, scopes);

\\unrestrict 0123456789abcdef
--
-- PostgreSQL database dump complete
--
`

const CONVERTED_K1 = '{"Map": [[{"Text": "a"}, {"List": [{"Integer": 1}, {"Float": 2.5}, {"Text": "x"}]}], [{"Text": "t"}, {"TimeZone": "UTC"}]]}'

function freshDir(name: string): string {
  return path.join(cwd, name)
}

describe('embedded database (PGlite)', () => {
  it('is used when nothing is configured: one notice line, then migrate and status work', async () => {
    const migrate = await runCli(['migrate'], {cwd, env: noClientTools})
    assert.equal(migrate.code, 0, migrate.stderr)
    const notices = migrate.stderr.split('\n').filter((line) => line.includes('embedded database'))
    assert.deepEqual(notices, [
      'Using the embedded database in .tw-db/pglite (no server configured). To use a server, pass --database-url postgres://USER@HOST:5432/DB or set DATABASE_URL.',
    ])
    assert.match(migrate.stdout, /Applied 5 migrations/)
    assert.equal(existsSync(`${DEFAULT_DIR}.lock`), false, 'the data directory lock is released')

    const status = await runCli(['status', '--json'], {cwd, env: noClientTools})
    assert.equal(status.code, 0, status.stderr)
    assert.deepEqual(parseJson(status).summary, {applied: 5, pending: 0, modified: 0, unknown: 0})

    const columns = await queryEmbedded<{column_name: string}>(
      DEFAULT_DIR,
      `select column_name from information_schema.columns where table_name = 'tenant_kv' order by ordinal_position`,
    )
    assert.deepEqual(columns.map((c) => c.column_name), ['id', 'owner_id', 'key', 'value', 'scopes', 'created_at', 'last_updated_at', 'owner_type'])
  })

  it('is refused when CI is set: exit 2, "no database configured", nothing created', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tw-db-ci-'))
    try {
      for (const ci of ['true', '1']) {
        const result = await runCli(['migrate'], {cwd: dir, env: {CI: ci}})
        assert.equal(result.code, 2, result.stderr)
        assert.match(result.stderr, /^Error: no database configured/m)
        assert.match(result.stderr, /--database-url/)
        assert.equal(existsSync(path.join(dir, '.tw-db')), false)
      }
      // CI=false is not a CI run: the embedded database is used (status creates nothing in it).
      const local = await runCli(['status', '--json'], {cwd: dir, env: {CI: 'false'}})
      assert.equal(local.code, 0, local.stderr)
      assert.match(local.stderr, /Using the embedded database/)
    } finally {
      rmSync(dir, {recursive: true, force: true})
    }
  })

  it('restores a plain dump with COPY data (no psql), migrates it, backs it up without pg_dump, resets and restores it', async () => {
    const url = `pglite:${freshDir('legacy')}`
    const dumpFile = path.join(cwd, 'legacy.sql')
    writeFileSync(dumpFile, LEGACY_DUMP)

    const restore = await runCli(['restore', dumpFile, '--database-url', url], {cwd, env: noClientTools})
    assert.equal(restore.code, 0, restore.stderr)
    assert.match(restore.stdout, /0 applied, 5 pending/)

    const migrate = await runCli(['migrate', '--database-url', url], {cwd, env: noClientTools})
    assert.equal(migrate.code, 0, migrate.stderr)
    assert.doesNotMatch(migrate.stderr, /Using the embedded database/, 'an explicit pglite: URL needs no notice')

    const backupFile = path.join(cwd, 'backup.sql')
    const backup = await runCli(['backup', '-o', backupFile, '--database-url', url], {cwd, env: noClientTools})
    assert.equal(backup.code, 0, backup.stderr)
    // pglite-tools' pg_dump, not this machine's (15): the version proves which one ran.
    assert.match(backup.stderr, /Backup complete: plain format, .* last applied migration: drop_tenant_kv_expires_at \(pg_dump 1[7-9]\./)
    assert.equal(statSync(backupFile).mode & 0o777, 0o600)
    const dump = readFileSync(backupFile, 'utf8')
    assert.match(dump, /-- PostgreSQL database dump complete/)
    assert.match(dump, /INSERT INTO public\.tenant_kv VALUES \('k1'/)

    const refused = await runCli(['backup', '-F', 'custom', '-o', path.join(cwd, 'x.dump'), '--database-url', url], {cwd, env: noClientTools})
    assert.equal(refused.code, 2)
    assert.match(refused.stderr, /^Error: the embedded database's pg_dump writes uncompressed plain SQL only/m)
    assert.equal(existsSync(path.join(cwd, 'x.dump')), false)

    // With --backup: pglite-tools' pg_dump must not leave its read-only transaction to the reset.
    const beforeReset = path.join(cwd, 'before-reset.sql')
    const reset = await runCli(['reset', '--force', '--backup', beforeReset, '--database-url', url], {cwd, env: noClientTools})
    assert.equal(reset.code, 0, reset.stderr)
    assert.match(readFileSync(beforeReset, 'utf8'), /INSERT INTO public\.tenant_kv VALUES \('k1'/)
    const afterReset = await runCli(['status', '--json', '--database-url', url], {cwd, env: noClientTools})
    assert.deepEqual(parseJson(afterReset).summary, {applied: 0, pending: 5, modified: 0, unknown: 0})

    const again = await runCli(['restore', backupFile, '--database-url', url], {cwd, env: noClientTools})
    assert.equal(again.code, 0, again.stderr)
    assert.match(again.stdout, /5 applied, 0 pending/)
    // --clean on a non-empty database, in one transaction with the restore.
    const clean = await runCli(['restore', backupFile, '--clean', '--database-url', url], {cwd, env: noClientTools})
    assert.equal(clean.code, 0, clean.stderr)

    const rows = await queryEmbedded<{id: string; owner_id: string; key: string; value: string; scopes: string[]; last_updated_at: Date}>(
      freshDir('legacy'),
      'select id, owner_id, key, value::text as value, scopes, last_updated_at from public.tenant_kv order by id',
    )
    assert.deepEqual(
      rows.map((r) => [r.id, r.owner_id, r.key, r.value, r.scopes]),
      [
        ['k1', 'g1', 'settings', CONVERTED_K1, []],
        ['k2', 'g1', 'tab\tkey', '{"Boolean": true}', ['a', 'b']],
      ],
    )
    assert.equal(rows[0].last_updated_at.toISOString(), '2024-01-02T00:00:00.000Z')
  })

  it('refuses a pglite: path that is a file, lies under a file, or is a directory of other files, touching nothing', async () => {
    const dir = freshDir('not-a-database')
    mkdirSync(dir)
    writeFileSync(path.join(dir, 'main.js'), 'code\n')
    writeFileSync(path.join(cwd, 'a-file'), 'hi\n')
    for (const [target, reason] of [
      [path.join(cwd, 'a-file'), /it is a file, not a directory/],
      [path.join(cwd, 'a-file', 'sub'), /^Error: cannot use .*a-file\/sub for the embedded database: part of the path is a file$/m],
      [dir, /the directory holds other files and no database/],
    ] as const) {
      const result = await runCli(['status', '--database-url', `pglite:${target}`], {cwd, env: noClientTools})
      assert.equal(result.code, 1, result.stderr)
      assert.match(result.stderr, reason)
      assert.doesNotMatch(result.stderr, /bug in tw-db/)
    }
    assert.deepEqual(readdirSync(dir), ['main.js'])
    assert.equal(readFileSync(path.join(cwd, 'a-file'), 'utf8'), 'hi\n')
  })

  it('a failing restore leaves the embedded database as it was', async () => {
    const url = `pglite:${freshDir('legacy')}`
    const broken = path.join(cwd, 'broken.sql')
    writeFileSync(broken, LEGACY_DUMP.replace('ADD CONSTRAINT kv_unique_entry', 'ADD CONSTRAINT kv_unique_entry_no_such_column UNIQUE (nope), ADD CONSTRAINT x'))
    const result = await runCli(['restore', broken, '--clean', '--database-url', url], {cwd, env: noClientTools})
    assert.equal(result.code, 1)
    assert.match(result.stderr, /^Error: restore failed at line \d+: .*nope/m)
    const tables = await queryEmbedded<{tablename: string}>(freshDir('legacy'), `select tablename from pg_tables where schemaname = 'public' order by 1`)
    assert.deepEqual(tables.map((t) => t.tablename), ['_migrations_applied', 'tenant_kv', 'tenant_state'])
  })

  it('check-connection runs the steps that apply and marks the others', async () => {
    const result = await runCli(['check-connection', '--json', '--database-url', `pglite:${freshDir('legacy')}`], {cwd, env: noClientTools})
    assert.equal(result.code, 0, result.stderr)
    const report = parseJson(result)
    assert.equal(report.ok, true)
    const byName = Object.fromEntries(report.steps.map((s: {name: string; status: string}) => [s.name, s.status]))
    assert.deepEqual(
      ['dns', 'tls', 'pooler', 'pool-sizing'].map((name) => byName[name]),
      ['n/a', 'n/a', 'n/a', 'n/a'],
    )
    assert.equal(byName.authentication, 'pass')
    assert.equal(byName['uuid-ossp'], 'pass')
    assert.match(report.server.version, /^1[7-9]\./)
  })
})
