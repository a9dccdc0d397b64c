import assert from 'node:assert/strict'
import {createHash} from 'node:crypto'
import {mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, describe, it} from 'node:test'

import {TwDbError} from '../../src/lib/errors.js'
import {loadRegistry, parseMigration, parseRegistry, refuseOwnTransactions, type MigrationSource} from '../../src/lib/registry.js'

const created: string[] = []
after(() => {
  for (const dir of created) rmSync(dir, {recursive: true, force: true})
})

function source(name: string, text: string | Uint8Array): MigrationSource {
  return {name, file: `/registry/${name}`, bytes: typeof text === 'string' ? Buffer.from(text, 'utf8') : text}
}

function sha256(text: string): string {
  return createHash('sha256').update(Buffer.from(text, 'utf8')).digest('hex')
}

function registryDir(files: Record<string, string | Uint8Array>): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'tw-db-registry-'))
  created.push(dir)
  for (const [name, content] of Object.entries(files)) writeFileSync(path.join(dir, name), content)
  return dir
}

/** Runs fn and returns the E_REGISTRY error it must throw. */
function registryFailure(fn: () => unknown): TwDbError {
  try {
    fn()
  } catch (error) {
    assert.ok(error instanceof TwDbError, `expected a TwDbError, got ${String(error)}`)
    assert.equal(error.code, 'E_REGISTRY')
    return error
  }
  assert.fail('expected an E_REGISTRY error')
}

const SIMPLE = '-- description: Create a table\nCREATE TABLE t (id int);\n'

describe('parseMigration', () => {
  it('takes the prefix and id from the file name and the description from the header', () => {
    const m = parseMigration(source('0007_add_things.sql', SIMPLE))
    assert.equal(m.prefix, '0007')
    assert.equal(m.id, 'add_things')
    assert.equal(m.description, 'Create a table')
    assert.equal(m.transaction, true)
    assert.equal(m.file, '/registry/0007_add_things.sql')
    assert.equal(m.sql, SIMPLE)
  })

  it('reads "-- transaction: false" as a migration run outside a transaction', () => {
    const m = parseMigration(source('0001_idx.sql', '-- description: Index\n-- transaction: false\nCREATE INDEX CONCURRENTLY i ON t (id);\n'))
    assert.equal(m.transaction, false)
    assert.equal(m.description, 'Index')
  })

  it('accepts "-- transaction: true" and header lines in any order after blank lines', () => {
    const m = parseMigration(source('0001_x.sql', '\n-- transaction: true\n--description:   Spaced out   \nSELECT 1;\n'))
    assert.equal(m.transaction, true)
    assert.equal(m.description, 'Spaced out')
  })

  it('ignores a "-- description:" line that comes after the first SQL line', () => {
    const error = registryFailure(() => parseMigration(source('0001_late.sql', 'SELECT 1;\n-- description: too late\n')))
    assert.match(error.message, /\/registry\/0001_late\.sql/)
    assert.match(error.message, /missing "-- description/)
  })

  it('checksums the file with SHA-256 in hex', () => {
    const m = parseMigration(source('0001_x.sql', SIMPLE))
    assert.equal(m.checksum, sha256(SIMPLE))
    assert.match(m.checksum, /^[0-9a-f]{64}$/)
  })

  it('gives a CRLF copy of a file the same checksum and SQL as the LF file', () => {
    const lf = '-- description: Two lines\nSELECT 1;\nSELECT 2;\n'
    const crlf = lf.replace(/\n/g, '\r\n')
    const a = parseMigration(source('0001_x.sql', lf))
    const b = parseMigration(source('0001_x.sql', crlf))
    assert.equal(b.checksum, sha256(lf))
    assert.equal(b.checksum, a.checksum)
    assert.equal(b.sql, lf)
  })

  it('gives a file a different checksum when one character changes', () => {
    const a = parseMigration(source('0001_x.sql', SIMPLE))
    const b = parseMigration(source('0001_x.sql', SIMPLE.replace('id int', 'id bigint')))
    assert.notEqual(a.checksum, b.checksum)
  })

  it('checksums multi-byte text as its UTF-8 bytes', () => {
    const text = "-- description: Café ☕\nSELECT 'é';\n"
    assert.equal(parseMigration(source('0001_x.sql', text)).checksum, sha256(text))
  })

  it('refuses a file without a description header, naming the file', () => {
    const error = registryFailure(() => parseMigration(source('0003_nodesc.sql', 'CREATE TABLE t (id int);\n')))
    assert.match(error.message, /\/registry\/0003_nodesc\.sql/)
    assert.equal(error.exit, 1)
  })

  it('refuses an empty description', () => {
    const error = registryFailure(() => parseMigration(source('0003_empty_desc.sql', '-- description:\nSELECT 1;\n')))
    assert.match(error.message, /0003_empty_desc\.sql.*description/)
  })

  it('refuses a transaction header that is neither true nor false', () => {
    const error = registryFailure(() => parseMigration(source('0003_tx.sql', '-- description: x\n-- transaction: maybe\nSELECT 1;\n')))
    assert.match(error.message, /0003_tx\.sql/)
    assert.match(error.message, /"maybe"/)
  })

  it('reads every "-- replaces-checksum:" line, and refuses one that is not a SHA-256', () => {
    const [a, b] = ['a'.repeat(64), '0123456789abcdef'.repeat(4)]
    const m = parseMigration(source('0005_x.sql', `-- description: x\n-- replaces-checksum: ${a}\n-- replaces-checksum:${b}\nSELECT 1;\n`))
    assert.deepEqual(m.replacedChecksums, [a, b])
    assert.deepEqual(parseMigration(source('0005_x.sql', SIMPLE)).replacedChecksums, [])
    const error = registryFailure(() => parseMigration(source('0005_bad.sql', '-- description: x\n-- replaces-checksum: 2766556f\nSELECT 1;\n')))
    assert.match(error.message, /0005_bad\.sql.*replaces-checksum.*"2766556f"/)
  })

  it('refuses a file that holds no SQL besides comments', () => {
    const error = registryFailure(() => parseMigration(source('0004_empty.sql', '-- description: Nothing\n-- just a note\n\n')))
    assert.match(error.message, /\/registry\/0004_empty\.sql/)
    assert.match(error.message, /no SQL/)
  })

  for (const [label, sql, keyword, line] of [
    ['a COMMIT', 'CREATE TABLE a (id int);\nCOMMIT;\nCREATE TABLE b (id int);\n', 'COMMIT', 3],
    ['a BEGIN … COMMIT wrapper', '\nBEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\n', 'BEGIN', 3],
    ['a ROLLBACK after a comment', 'CREATE TABLE a (id int);\n/* undo */ -- all of it\nrollback;\n', 'ROLLBACK', 4],
    ['END', 'SELECT 1;\nend;\n', 'END', 3],
    ['START TRANSACTION', 'start  transaction isolation level serializable;\n', 'START TRANSACTION', 2],
  ] as const) {
    it(`refuses to run ${label} in a transactional migration, naming the file and the line`, () => {
      const migration = parseMigration(source('0006_tx.sql', `-- description: Ends its transaction\n${sql}`))
      const error = registryFailure(() => refuseOwnTransactions([migration]))
      assert.match(error.message, /\/registry\/0006_tx\.sql: line \d+/)
      assert.ok(error.message.includes(`line ${line}: ${keyword} would end the transaction`), error.message)
    })
  }

  it('accepts savepoints, a BEGIN ATOMIC body and plpgsql blocks, and COMMIT outside a transaction', () => {
    const body = [
      'SAVEPOINT s;',
      'ROLLBACK TO SAVEPOINT s;',
      'rollback to s;',
      'RELEASE SAVEPOINT s;',
      'CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END;',
      'DO $$ BEGIN PERFORM 1; END $$;',
      "COMMENT ON TABLE t IS 'commit; begin;';",
    ].join('\n')
    const fine = parseMigration(source('0007_fine.sql', `-- description: Fine\n${body}\n`))
    const outside = parseMigration(source('0008_own.sql', '-- description: Own transactions\n-- transaction: false\nBEGIN;\nSELECT 1;\nCOMMIT;\n'))
    assert.equal(outside.transaction, false)
    assert.doesNotThrow(() => refuseOwnTransactions([fine, outside]))
  })

  it('refuses a file that is not valid UTF-8, naming the file', () => {
    const bytes = Buffer.concat([Buffer.from('-- description: Latin-1\nSELECT \''), Buffer.from([0xe9, 0xff]), Buffer.from("';\n")])
    const error = registryFailure(() => parseMigration(source('0005_latin1.sql', bytes)))
    assert.match(error.message, /\/registry\/0005_latin1\.sql/)
    assert.match(error.message, /UTF-8/)
  })

  for (const badName of ['1_short.sql', '0001-dash.sql', '0001_Upper.sql', '0001_has-dash.sql', '00001_five.sql', '0001_.sql', 'readme.sql']) {
    it(`refuses the file name ${badName}`, () => {
      const error = registryFailure(() => parseMigration(source(badName, SIMPLE)))
      assert.ok(error.message.includes(`/registry/${badName}`), error.message)
      assert.match(error.message, /NNNN_<id>\.sql/)
    })
  }

  it('keeps a leading BOM out of the SQL but inside the checksum', () => {
    const text = '\uFEFF' + SIMPLE
    const m = parseMigration(source('0001_bom.sql', text))
    assert.equal(m.sql, SIMPLE)
    assert.equal(m.description, 'Create a table')
    assert.equal(m.checksum, sha256(text))
  })
})

describe('parseRegistry', () => {
  it('orders migrations by their prefix, whatever order the files come in', () => {
    const ids = parseRegistry([
      source('0010_ten.sql', SIMPLE),
      source('0002_two.sql', SIMPLE),
      source('0001_one.sql', SIMPLE),
    ]).map((m) => m.id)
    assert.deepEqual(ids, ['one', 'two', 'ten'])
  })

  it('refuses a duplicate migration id, naming both files', () => {
    const error = registryFailure(() => parseRegistry([source('0001_same.sql', SIMPLE), source('0002_same.sql', SIMPLE)]))
    assert.match(error.message, /\/registry\/0002_same\.sql/)
    assert.match(error.message, /duplicate migration id "same"/)
    assert.match(error.message, /0001_same\.sql/)
  })

  it('refuses a duplicate prefix, naming both files', () => {
    const error = registryFailure(() => parseRegistry([source('0001_a.sql', SIMPLE), source('0001_b.sql', SIMPLE)]))
    assert.match(error.message, /\/registry\/0001_b\.sql/)
    assert.match(error.message, /duplicate order prefix 0001/)
    assert.match(error.message, /0001_a\.sql/)
  })

  it('refuses the whole registry when one file is broken', () => {
    const error = registryFailure(() => parseRegistry([source('0001_ok.sql', SIMPLE), source('0002_bad.sql', 'SELECT 1;\n')]))
    assert.match(error.message, /0002_bad\.sql/)
  })

  it('returns an empty registry for no files', () => {
    assert.deepEqual(parseRegistry([]), [])
  })
})

describe('loadRegistry', () => {
  it('loads the bundled registry: exactly the five Template Worker migrations in order', async () => {
    const migrations = await loadRegistry()
    assert.deepEqual(
      migrations.map((m) => m.id),
      ['khronosvalue_v2', 'kv_generic', 'tenantstate', 'cleanup_v8', 'drop_tenant_kv_expires_at'],
    )
    assert.deepEqual(
      migrations.map((m) => m.prefix),
      ['0001', '0002', '0003', '0004', '0005'],
    )
    for (const m of migrations) {
      assert.ok(m.description.length > 0, m.id)
      assert.match(m.checksum, /^[0-9a-f]{64}$/)
    }
  })

  it('loads a directory in prefix order and ignores files that are not .sql', async () => {
    const dir = registryDir({
      '0002_second.sql': SIMPLE,
      '0001_first.sql': '-- description: First\nSELECT 1;\n',
      'README.md': '# not a migration',
      'notes.txt': 'ignored',
    })
    const migrations = await loadRegistry(dir)
    assert.deepEqual(migrations.map((m) => m.id), ['first', 'second'])
    assert.equal(migrations[0].file, path.join(dir, '0001_first.sql'))
    assert.equal(migrations[0].description, 'First')
  })

  it('checksums files on disk the same for CRLF and LF line endings', async () => {
    const lf = '-- description: Line endings\nSELECT 1;\n'
    const lfDir = registryDir({'0001_eol.sql': lf})
    const crlfDir = registryDir({'0001_eol.sql': lf.replace(/\n/g, '\r\n')})
    const [fromLf] = await loadRegistry(lfDir)
    const [fromCrlf] = await loadRegistry(crlfDir)
    assert.equal(fromLf.checksum, sha256(lf))
    assert.equal(fromCrlf.checksum, sha256(lf))
  })

  it('refuses a badly named .sql file in the directory, naming its path', async () => {
    const dir = registryDir({'0001_ok.sql': SIMPLE, 'add-users.sql': SIMPLE})
    await assert.rejects(loadRegistry(dir), (error: unknown) => {
      assert.ok(error instanceof TwDbError)
      assert.equal(error.code, 'E_REGISTRY')
      assert.ok(error.message.includes(path.join(dir, 'add-users.sql')), error.message)
      return true
    })
  })

  it('refuses a .sql entry that cannot be read as a file (a directory, a dangling link), naming it', async () => {
    const dir = registryDir({'0001_ok.sql': SIMPLE})
    mkdirSync(path.join(dir, '0002_dir.sql'))
    symlinkSync(path.join(dir, 'nowhere'), path.join(dir, '0003_link.sql'))
    await assert.rejects(loadRegistry(dir), (error: unknown) => {
      assert.ok(error instanceof TwDbError)
      assert.equal(error.code, 'E_REGISTRY')
      assert.ok(error.message.includes(`broken migration registry: ${path.join(dir, '0002_dir.sql')}: cannot read it`), error.message)
      return true
    })
  })

  it('refuses a directory that does not exist with E_REGISTRY and exit 2', async () => {
    const missing = path.join(tmpdir(), 'tw-db-no-such-registry-dir-9f1c')
    await assert.rejects(loadRegistry(missing), (error: unknown) => {
      assert.ok(error instanceof TwDbError)
      assert.equal(error.code, 'E_REGISTRY')
      assert.equal(error.exit, 2)
      assert.ok(error.message.includes(missing), error.message)
      return true
    })
  })
})
