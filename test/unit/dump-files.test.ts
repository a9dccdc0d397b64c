import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {partialName, partialPid, pgDumpArgs} from '../../src/lib/backup.js'
import type {ConnectionConfig} from '../../src/lib/config.js'
import {parseToolVersion, toolEnv} from '../../src/lib/pgtools.js'
import {quoteIdent, resetScript} from '../../src/lib/reset.js'
import {DUMP_COMPLETE_LINE, detectFormat, isCompletePlainDump} from '../../src/lib/restore.js'

const connection: ConnectionConfig = {
  host: 'db.internal',
  port: 6543,
  user: 'antiraid',
  password: 'p@ss:w0rd/%',
  database: 'antiraid',
  ssl: 'require',
  connectTimeout: 10,
  maxConnections: 7,
  source: 'flag',
  sourceDetail: '--database-url',
  display: 'postgres://antiraid:***@db.internal:6543/antiraid',
}

describe('dump format detection', () => {
  it('recognises the custom format by its PGDMP magic', () => {
    assert.equal(detectFormat(Buffer.from('PGDMP\x01\x0f\x00')), 'custom')
  })
  it('recognises gzip by its magic bytes', () => {
    assert.equal(detectFormat(Buffer.from([0x1f, 0x8b, 0x08, 0x00])), 'gzip')
  })
  it('recognises a tar archive by "ustar" at offset 257', () => {
    const head = Buffer.alloc(512)
    head.write('toc.dat', 0)
    head.write('ustar', 257, 'latin1')
    assert.equal(detectFormat(head), 'tar')
  })
  it('takes anything else, empty input included, as plain SQL', () => {
    assert.equal(detectFormat(Buffer.from('--\n-- PostgreSQL database dump\n')), 'plain')
    assert.equal(detectFormat(Buffer.alloc(0)), 'plain')
  })
  it('calls a plain dump complete only with pg_dump\'s closing line', () => {
    assert.equal(isCompletePlainDump(`COPY x FROM stdin;\n\\.\n\n--\n${DUMP_COMPLETE_LINE}\n--\n\n\\unrestrict abc\n`), true)
    assert.equal(isCompletePlainDump('COPY x FROM stdin;\n1\t2\n'), false)
  })
})

describe('pg tool versions and arguments', () => {
  it('reads the version pg_dump prints, including distribution suffixes and old two-part versions', () => {
    assert.deepEqual(parseToolVersion('pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n'), {version: '15.18', major: 15})
    assert.deepEqual(parseToolVersion('psql (PostgreSQL) 18beta1'), {version: '18', major: 18})
    assert.deepEqual(parseToolVersion('pg_restore (PostgreSQL) 9.6.24'), {version: '9.6', major: 9})
    assert.equal(parseToolVersion('command not found'), undefined)
  })

  it('builds pg_dump arguments from the flags, with no connection settings or password', () => {
    const args = pgDumpArgs({format: 'custom', tables: ['tenant_kv', 'tenant_state'], compress: 6, schemaOnly: true})
    assert.deepEqual(args, ['--format', 'custom', '--no-password', '--schema-only', '--table', 'tenant_kv', '--table', 'tenant_state', '--compress', '6'])
    assert.throws(() => pgDumpArgs({format: 'plain', schemaOnly: true, dataOnly: true}), /cannot be used together/)
    assert.throws(() => pgDumpArgs({format: 'tar', compress: 5}), /-F tar cannot be compressed/)
    assert.deepEqual(pgDumpArgs({format: 'tar', compress: 0}), ['--format', 'tar', '--no-password', '--compress', '0'])
  })

  it('passes the connection and password to a child only through libpq variables, dropping inherited PG* ones', () => {
    const env = toolEnv(connection, {PATH: '/bin', PGSERVICE: 'elsewhere', PGPASSFILE: '/x'})
    assert.equal(env.PATH, '/bin')
    assert.equal(env.PGSERVICE, undefined)
    assert.equal(env.PGPASSFILE, undefined)
    assert.deepEqual(
      [env.PGHOST, env.PGPORT, env.PGUSER, env.PGDATABASE, env.PGPASSWORD, env.PGSSLMODE, env.PGAPPNAME],
      ['db.internal', '6543', 'antiraid', 'antiraid', 'p@ss:w0rd/%', 'require', 'tw-db'],
    )
  })

  it('uses the socket directory as PGHOST for a unix-socket connection', () => {
    assert.equal(toolEnv({...connection, socketPath: '/var/run/postgresql'}, {}).PGHOST, '/var/run/postgresql')
  })
})

describe('temporary backup files', () => {
  it('reads back the pid from the name a backup writes beside its target', () => {
    assert.equal(partialName('tw.dump', 4242), '.tw.dump.tw-db-4242.partial')
    assert.equal(partialPid(partialName('tw.dump', 4242), 'tw.dump'), 4242)
    assert.equal(partialPid(partialName('a b.tw-db-7.partial', 99), 'a b.tw-db-7.partial'), 99)
  })

  it('claims no file that is not a partial of this very target', () => {
    assert.equal(partialPid('tw.dump', 'tw.dump'), undefined)
    assert.equal(partialPid('.tw.dump.gz.tw-db-4242.partial', 'tw.dump'), undefined, 'a partial of another target')
    assert.equal(partialPid('.tw.dump.tw-db-4242.partial', 'tw.dump.gz'), undefined)
    assert.equal(partialPid('.tw.dump.tw-db-.partial', 'tw.dump'), undefined)
    assert.equal(partialPid('.tw.dump.tw-db-12x.partial', 'tw.dump'), undefined)
    assert.equal(partialPid('.tw.dump.tw-db-0.partial', 'tw.dump'), undefined)
    assert.equal(partialPid('.tw.dump.tw-db-12345678901.partial', 'tw.dump'), undefined, 'more digits than any pid')
    assert.equal(partialPid('.tw.dump.tw-db-4242.partial.bak', 'tw.dump'), undefined)
  })
})

describe('reset script', () => {
  it('drops every other schema and recreates public with its owner, grants and default privileges', () => {
    const script = resetScript(
      {
        schemas: ['extra', 'Odd"Name'],
        publicOwner: 'pg_database_owner',
        publicGrants: [
          {grantee: 'pg_database_owner', privilege: 'USAGE', grantable: false},
          {grantee: 'pg_database_owner', privilege: 'CREATE', grantable: false},
          {grantee: null, privilege: 'USAGE', grantable: false},
        ],
        publicDefaults: [{role: 'antiraid', objectType: 'r', grantee: 'reader', privilege: 'SELECT', grantable: true}],
      },
      'antiraid',
    )
    assert.equal(
      script,
      [
        'DROP SCHEMA "extra" CASCADE;',
        'DROP SCHEMA "Odd""Name" CASCADE;',
        'DROP SCHEMA IF EXISTS public CASCADE;',
        'CREATE SCHEMA public AUTHORIZATION "pg_database_owner";',
        'REVOKE ALL ON SCHEMA public FROM PUBLIC;',
        'GRANT USAGE ON SCHEMA public TO "pg_database_owner";',
        'GRANT CREATE ON SCHEMA public TO "pg_database_owner";',
        'GRANT USAGE ON SCHEMA public TO PUBLIC;',
        'ALTER DEFAULT PRIVILEGES FOR ROLE "antiraid" IN SCHEMA public GRANT SELECT ON TABLES TO "reader" WITH GRANT OPTION;',
      ].join('\n'),
    )
  })

  it('keeps the default ACL when public had none, and creates public for the current user when it was missing', () => {
    const script = resetScript({schemas: [], publicOwner: null, publicGrants: null, publicDefaults: []}, 'me')
    assert.equal(script, 'DROP SCHEMA IF EXISTS public CASCADE;\nCREATE SCHEMA public AUTHORIZATION "me";')
  })

  it('never emits a privilege that is not a plain keyword', () => {
    const script = resetScript(
      {schemas: [], publicOwner: 'o', publicGrants: [{grantee: 'x', privilege: 'USAGE; DROP TABLE t', grantable: false}], publicDefaults: []},
      'o',
    )
    assert.doesNotMatch(script, /DROP TABLE/)
  })

  it('quotes identifiers by doubling quotes', () => {
    assert.equal(quoteIdent('a"b'), '"a""b"')
  })
})
