import assert from 'node:assert/strict'
import {chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, describe, it} from 'node:test'

import {connectionFromUrl, loadConfig, type Config} from '../../src/lib/config.js'
import {TwDbError} from '../../src/lib/errors.js'
import {redact} from '../../src/lib/redact.js'

const created: string[] = []
after(() => {
  for (const dir of created) rmSync(dir, {recursive: true, force: true})
})

/**
 * A temporary project directory holding the given files (mode 0600 unless
 * told). An empty package.json stops cosmiconfig's upward search there, so
 * nothing outside the directory can be picked up.
 */
function project(files: Record<string, string> = {}, mode = 0o600): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'tw-db-config-'))
  created.push(dir)
  writeFileSync(path.join(dir, 'package.json'), '{}\n')
  for (const [name, content] of Object.entries(files)) {
    const file = path.join(dir, name)
    writeFileSync(file, content)
    chmodSync(file, mode)
  }
  return dir
}

/** Resolves to the TwDbError that loadConfig threw (fails the test if it resolved). */
async function configFailure(promise: Promise<Config>): Promise<TwDbError> {
  try {
    await promise
  } catch (error) {
    assert.ok(error instanceof TwDbError, `expected a TwDbError, got ${String(error)}`)
    return error
  }
  assert.fail('loadConfig resolved, expected it to throw')
}

const TEMPLATE_WORKER_YAML = `meta:
  postgres_url: postgres://antiraid:filepw@file-host:5432/antiraid
  bot_token_secret: not-ours
discord:
  token: abc.def.ghi
  public_bot: true
object_storage:
  type: s3
  path: bucket
sites:
  api: https://example.org
`

describe('loadConfig: where the database comes from', () => {
  it('takes --database-url over DATABASE_URL, the config file and libpq variables', async () => {
    const dir = project({'config.yaml': TEMPLATE_WORKER_YAML})
    const env = {DATABASE_URL: 'postgres://envuser@env-host/envdb', PGHOST: 'libpq-host', PGDATABASE: 'libpqdb'}
    const config = await loadConfig({databaseUrl: 'postgres://flaguser@flag-host:6000/flagdb'}, env, dir)
    assert.equal(config.connection.host, 'flag-host')
    assert.equal(config.connection.port, 6000)
    assert.equal(config.connection.database, 'flagdb')
    assert.equal(config.connection.source, 'flag')
    assert.equal(config.connection.sourceDetail, '--database-url')
  })

  it('takes DATABASE_URL over the config file and libpq variables', async () => {
    const dir = project({'config.yaml': TEMPLATE_WORKER_YAML})
    const env = {DATABASE_URL: 'postgres://envuser@env-host/envdb', PGHOST: 'libpq-host', PGDATABASE: 'libpqdb'}
    const config = await loadConfig({}, env, dir)
    assert.equal(config.connection.host, 'env-host')
    assert.equal(config.connection.database, 'envdb')
    assert.equal(config.connection.user, 'envuser')
    assert.equal(config.connection.source, 'env')
    assert.equal(config.connection.sourceDetail, 'DATABASE_URL')
  })

  it('takes the config file over libpq variables', async () => {
    const dir = project({'config.yaml': TEMPLATE_WORKER_YAML})
    const config = await loadConfig({}, {PGHOST: 'libpq-host', PGDATABASE: 'libpqdb'}, dir)
    assert.equal(config.connection.host, 'file-host')
    assert.equal(config.connection.database, 'antiraid')
    assert.equal(config.connection.source, 'file')
    assert.equal(config.connection.sourceDetail, `${path.join(dir, 'config.yaml')} (meta.postgres_url)`)
    assert.equal(config.file, path.join(dir, 'config.yaml'))
  })

  it('falls back to libpq variables when PGHOST or PGDATABASE is set', async () => {
    const dir = project()
    const env = {PGHOST: 'pg.internal', PGPORT: '6432', PGUSER: 'worker', PGPASSWORD: 'libpq-secret', PGDATABASE: 'antiraid', PGSSLMODE: 'require'}
    const config = await loadConfig({}, env, dir)
    const c = config.connection
    assert.deepEqual(
      {host: c.host, port: c.port, user: c.user, password: c.password, database: c.database, ssl: c.ssl, source: c.source},
      {host: 'pg.internal', port: 6432, user: 'worker', password: 'libpq-secret', database: 'antiraid', ssl: 'require', source: 'libpq'},
    )
    assert.equal(c.display, 'postgres://worker:***@pg.internal:6432/antiraid')
    assert.equal(config.file, undefined)
  })

  it('rejects an invalid PGPORT or PGSSLMODE naming the variable', async () => {
    for (const [env, pattern] of [
      [{PGHOST: 'x', PGPORT: 'abc'}, /PGPORT/],
      [{PGHOST: 'x', PGPORT: '99999'}, /PGPORT/],
      [{PGHOST: 'x', PGSSLMODE: 'bogus'}, /PGSSLMODE/],
    ] as const) {
      await assert.rejects(loadConfig({}, {...env}, project()), (error: TwDbError) => {
        assert.equal(error.code, 'E_CONFIG')
        assert.equal(error.exit, 2)
        assert.match(error.message, pattern)
        return true
      })
    }
  })

  it('uses libpq variables when only PGDATABASE is set, with localhost as host', async () => {
    const config = await loadConfig({}, {PGDATABASE: 'only_db', PGUSER: 'me'}, project())
    assert.equal(config.connection.host, 'localhost')
    assert.equal(config.connection.port, 5432)
    assert.equal(config.connection.database, 'only_db')
  })

  it('falls back to the embedded database in .tw-db/pglite when nothing is configured, with one notice', async () => {
    const config = await loadConfig({}, {}, project())
    assert.deepEqual(config.connection.embedded, {dataDir: path.join('.tw-db', 'pglite')})
    assert.equal(config.connection.source, 'default')
    assert.equal(config.connection.maxConnections, 1)
    assert.equal(config.connection.display, 'pglite:.tw-db/pglite')
    assert.equal(config.notices.length, 1)
    assert.match(config.notices[0], /^Using the embedded database in \.tw-db\/pglite .*--database-url/)
  })

  it('fails with E_NO_DATABASE (exit 2) when nothing is configured and CI is true', async () => {
    for (const ci of ['true', '1', 'yes', 'TRUE']) {
      const error = await configFailure(loadConfig({}, {CI: ci}, project()))
      assert.equal(error.code, 'E_NO_DATABASE')
      assert.equal(error.exit, 2)
      assert.equal(error.message, 'no database configured')
      assert.ok(error.hint && error.hint.includes('DATABASE_URL') && error.hint.includes('CI is set'))
    }
  })

  it('does not count CI=false, 0, no, off or empty as CI', async () => {
    for (const ci of ['false', '0', 'no', 'off', '']) {
      const config = await loadConfig({}, {CI: ci}, project())
      assert.ok(config.connection.embedded, `CI=${ci}`)
    }
  })

  it('does not take PGUSER or PGPASSWORD alone as a configuration', async () => {
    const error = await configFailure(loadConfig({}, {PGUSER: 'u', PGPASSWORD: 'p', CI: 'true'}, project()))
    assert.equal(error.code, 'E_NO_DATABASE')
  })

  it('treats an empty config.yaml as no configuration', async () => {
    const error = await configFailure(loadConfig({}, {CI: 'true'}, project({'config.yaml': ''})))
    assert.equal(error.code, 'E_NO_DATABASE')
  })

  it('selects the embedded database with pglite: URLs from any source, even in CI', async () => {
    const cases: Array<[string, string]> = [
      ['pglite:', path.join('.tw-db', 'pglite')],
      ['pglite:./data/db', './data/db'],
      ['pglite:/var/lib/tw/db', '/var/lib/tw/db'],
      ['pglite:///var/lib/tw/db', '/var/lib/tw/db'],
    ]
    for (const [url, dataDir] of cases) {
      const config = await loadConfig({databaseUrl: url}, {CI: 'true'}, project())
      assert.deepEqual(config.connection.embedded, {dataDir}, url)
      assert.deepEqual(config.notices, [], 'an explicit choice needs no notice')
    }
    const fromEnv = await loadConfig({}, {DATABASE_URL: 'pglite:env-db'}, project())
    assert.deepEqual(fromEnv.connection.embedded, {dataDir: 'env-db'})
    const fromFile = await loadConfig({}, {}, project({'config.yaml': 'meta:\n  postgres_url: pglite:file-db\n'}))
    assert.deepEqual(fromFile.connection.embedded, {dataDir: 'file-db'})
    assert.equal(fromFile.connection.source, 'file')
  })

  it('fills what a URL lacks from libpq variables', async () => {
    const config = await loadConfig({}, {DATABASE_URL: 'postgres://db-host', PGUSER: 'envuser', PGPASSWORD: 'envpw', PGDATABASE: 'envdb', PGPORT: '5555'}, project())
    const c = config.connection
    assert.deepEqual([c.user, c.password, c.database, c.port], ['envuser', 'envpw', 'envdb', 5555])
  })
})

describe('loadConfig: Template Worker config.yaml', () => {
  it('reads meta.postgres_url and ignores discord, object_storage, sites and other meta keys without warnings', async () => {
    const config = await loadConfig({}, {}, project({'config.yaml': TEMPLATE_WORKER_YAML}))
    const c = config.connection
    assert.deepEqual(
      {host: c.host, port: c.port, user: c.user, password: c.password, database: c.database},
      {host: 'file-host', port: 5432, user: 'antiraid', password: 'filepw', database: 'antiraid'},
    )
    assert.equal(c.display, 'postgres://antiraid:***@file-host:5432/antiraid')
    assert.deepEqual(config.warnings, [])
  })

  it('prefers database.url over meta.postgres_url', async () => {
    const yaml = `meta:\n  postgres_url: postgres://meta@meta-host/metadb\ndatabase:\n  url: postgres://own@own-host/owndb\n`
    const config = await loadConfig({}, {}, project({'config.yaml': yaml}))
    assert.equal(config.connection.host, 'own-host')
    assert.equal(config.connection.sourceDetail.endsWith('(database.url)'), true)
  })

  it('does not warn about unknown top-level keys in config.yaml', async () => {
    const yaml = `meta:\n  postgres_url: postgres://u@h/db\nsomething_else: 1\n`
    const config = await loadConfig({}, {}, project({'config.yaml': yaml}))
    assert.deepEqual(config.warnings, [])
  })

  it('reads every tw-db key of the file', async () => {
    const yaml = [
      'database:',
      '  url: postgres://u@h/db',
      '  max_connections: 3',
      '  connect_timeout: 4',
      '  ssl: require',
      '  ssl_root_cert: ./ca.pem',
      'migrations:',
      '  lock_timeout: 5',
      '  statement_lock_timeout: 6',
      'tools:',
      '  pg_bin_dir: ./bin',
      '',
    ].join('\n')
    const dir = project({'config.yaml': yaml})
    const config = await loadConfig({}, {}, dir)
    assert.equal(config.connection.maxConnections, 3)
    assert.equal(config.connection.connectTimeout, 4)
    assert.equal(config.connection.ssl, 'require')
    assert.equal(config.connection.sslRootCert, path.join(dir, 'ca.pem'))
    assert.deepEqual(config.migrations, {lockTimeout: 5, statementLockTimeout: 6})
    assert.equal(config.tools.pgBinDir, path.join(dir, 'bin'))
    assert.deepEqual(config.warnings, [])
  })

  it('uses the documented defaults when the file sets nothing but the URL', async () => {
    const config = await loadConfig({}, {}, project({'config.yaml': 'meta:\n  postgres_url: postgres://u@h/db\n'}))
    assert.equal(config.connection.maxConnections, 7)
    assert.equal(config.connection.connectTimeout, 10)
    assert.equal(config.connection.ssl, 'prefer')
    assert.deepEqual(config.migrations, {lockTimeout: 60, statementLockTimeout: 10})
  })

  it('returns a frozen configuration', async () => {
    const config = await loadConfig({}, {}, project({'config.yaml': 'meta:\n  postgres_url: postgres://u@h/db\n'}))
    assert.ok(Object.isFrozen(config))
    assert.ok(Object.isFrozen(config.connection))
    assert.ok(Object.isFrozen(config.warnings))
  })

  it('reads the file named by --config, relative to the working directory', async () => {
    const dir = project({'elsewhere.yaml': 'database:\n  url: postgres://u@explicit-host/db\n'})
    const config = await loadConfig({configPath: 'elsewhere.yaml'}, {}, dir)
    assert.equal(config.connection.host, 'explicit-host')
    assert.equal(config.file, path.join(dir, 'elsewhere.yaml'))
  })

  it('finds a file in a directory above the working directory, when no package.json ends the search first', async () => {
    // No package.json here: the search walks up from a/b to the directory holding the file.
    const dir = mkdtempSync(path.join(tmpdir(), 'tw-db-config-'))
    created.push(dir)
    const cwd = path.join(dir, 'a', 'b')
    mkdirSync(cwd, {recursive: true})
    for (const name of ['tw-db.config.yaml', '.tw-dbrc.json']) {
      const file = path.join(dir, name)
      writeFileSync(file, name.endsWith('.json') ? '{"database": {"url": "postgres://u@rc-host/db"}}' : 'database:\n  url: postgres://u@above-host/db\n')
      const config = await loadConfig({}, {}, cwd)
      assert.equal(config.connection.host, name.endsWith('.json') ? 'rc-host' : 'above-host')
      assert.equal(config.file, file)
      rmSync(file)
    }
  })

  it('finds no file (and uses the URL given) in a directory tree holding none', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'tw-db-config-'))
    created.push(dir)
    const config = await loadConfig({databaseUrl: 'postgres://u@flag-host/db'}, {}, dir)
    assert.equal(config.file, undefined)
    assert.equal(config.connection.host, 'flag-host')
  })

  it('finds a tw-db key in package.json', async () => {
    const dir = project()
    writeFileSync(path.join(dir, 'package.json'), JSON.stringify({name: 'x', 'tw-db': {database: {url: 'postgres://u@pkg-host/db'}}}))
    const config = await loadConfig({}, {}, dir)
    assert.equal(config.connection.host, 'pkg-host')
  })
})

describe('loadConfig: ${VAR} expansion', () => {
  it('expands ${VAR} from the given environment', async () => {
    const yaml = 'database:\n  url: postgres://user:${TW_TEST_PW}@db.internal:5432/antiraid\n'
    const config = await loadConfig({}, {TW_TEST_PW: 'from-env'}, project({'config.yaml': yaml}))
    assert.equal(config.connection.password, 'from-env')
    assert.equal(config.connection.host, 'db.internal')
  })

  it('keeps $${VAR} as a literal ${VAR}', async () => {
    const yaml = 'database:\n  url: postgres://user:pw@h/db\n  ssl_root_cert: ./$${NOT_EXPANDED}.pem\n'
    const dir = project({'config.yaml': yaml})
    const config = await loadConfig({}, {}, dir)
    assert.equal(config.connection.sslRootCert, path.join(dir, '${NOT_EXPANDED}.pem'))
  })

  it('fails with E_CONFIG (exit 2) naming the key, the variable and the file when ${VAR} is unset', async () => {
    const yaml = 'database:\n  url: postgres://user:${TW_UNSET_VAR}@h/db\n'
    const dir = project({'config.yaml': yaml})
    const error = await configFailure(loadConfig({}, {}, dir))
    assert.equal(error.code, 'E_CONFIG')
    assert.equal(error.exit, 2)
    assert.ok(error.message.includes('database.url'), error.message)
    assert.ok(error.message.includes('TW_UNSET_VAR'), error.message)
    assert.ok(error.message.includes(path.join(dir, 'config.yaml')), error.message)
    assert.ok(error.message.includes('line 2'), error.message)
  })
})

describe('loadConfig: invalid values', () => {
  it('reports a wrong type with its key and line', async () => {
    const yaml = 'database:\n  url: postgres://u@h/db\n  max_connections: "lots"\n'
    const dir = project({'config.yaml': yaml})
    const error = await configFailure(loadConfig({}, {}, dir))
    assert.equal(error.code, 'E_CONFIG')
    assert.equal(error.exit, 2)
    assert.ok(error.message.includes('database.max_connections'), error.message)
    assert.ok(error.message.includes('"lots"'), error.message)
    assert.ok(error.message.includes('(line 3)'), error.message)
    assert.ok(error.message.includes(path.join(dir, 'config.yaml')), error.message)
  })

  it('reports a non-string URL', async () => {
    const error = await configFailure(loadConfig({}, {}, project({'config.yaml': 'database:\n  url: 5\n'})))
    assert.equal(error.code, 'E_CONFIG')
    assert.match(error.message, /database\.url must be a string, got number 5 \(line 2\)/)
  })

  it('reports every problem of the file together in one error', async () => {
    const yaml = [
      'database:',
      '  url: postgres://u:${TW_MISSING}@h/db',
      '  max_connections: lots',
      '  ssl: maybe',
      'migrations:',
      '  lock_timeout: -1',
      '',
    ].join('\n')
    const error = await configFailure(loadConfig({}, {}, project({'config.yaml': yaml})))
    assert.equal(error.code, 'E_CONFIG')
    assert.equal(error.exit, 2)
    const lines = error.message.split('\n').filter((line) => line.startsWith('  - '))
    assert.equal(lines.length, 4, error.message)
    assert.match(lines[0], /database\.url .*TW_MISSING.*\(line 2\)/)
    assert.match(lines[1], /database\.max_connections .*"lots".*\(line 3\)/)
    assert.match(lines[2], /database\.ssl .*"maybe".*\(line 4\)/)
    assert.match(lines[3], /migrations\.lock_timeout .*-1.*\(line 6\)/)
  })

  it('reports a section that is not a mapping', async () => {
    const yaml = 'database: just-a-string\nmeta:\n  postgres_url: postgres://u@h/db\n'
    const error = await configFailure(loadConfig({}, {}, project({'config.yaml': yaml})))
    assert.equal(error.code, 'E_CONFIG')
    assert.match(error.message, /database must be a mapping of keys \(line 1\)/)
    assert.equal(error.message.split('mapping of keys').length, 2, 'reported once')
  })

  it('reports a file whose top level is not a mapping', async () => {
    const error = await configFailure(loadConfig({}, {}, project({'config.yaml': '- a\n- b\n'})))
    assert.equal(error.code, 'E_CONFIG')
    assert.equal(error.exit, 2)
    assert.match(error.message, /top level must be a mapping/)
  })

  it('reports invalid YAML with the file and line', async () => {
    const dir = project({'config.yaml': 'meta:\n  postgres_url: postgres://u@h/db\ndatabase:\n  url: [\n'})
    const error = await configFailure(loadConfig({}, {}, dir))
    assert.equal(error.code, 'E_CONFIG')
    assert.equal(error.exit, 2)
    assert.ok(error.message.includes(`invalid YAML in ${path.join(dir, 'config.yaml')}:5:`), error.message)
  })

  it('reports a duplicated YAML key on the line of the duplicate', async () => {
    const dir = project({'tw-db.config.yaml': 'database:\n  url: postgres://u@h/db\n  url: postgres://u@other/db\n'})
    const error = await configFailure(loadConfig({}, {}, dir))
    assert.equal(error.code, 'E_CONFIG')
    assert.match(error.message, new RegExp(`invalid YAML in ${path.join(dir, 'tw-db.config.yaml').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:3:`))
  })

  it('reports a URL that is not a PostgreSQL URL, naming where it came from', async () => {
    const dir = project({'config.yaml': 'meta:\n  postgres_url: mysql://u:hidden-pw@h/db\n'})
    const error = await configFailure(loadConfig({}, {}, dir))
    assert.equal(error.code, 'E_CONFIG')
    assert.ok(error.message.includes('(meta.postgres_url)'), error.message)
    assert.match(error.message, /not a PostgreSQL URL/)
    assert.ok(!error.message.includes('hidden-pw'), error.message)
  })

  it('reports an invalid port in --database-url', async () => {
    const error = await configFailure(loadConfig({databaseUrl: 'postgres://u@h:99999/db'}, {}, project()))
    assert.equal(error.code, 'E_CONFIG')
    assert.equal(error.exit, 2)
    assert.match(error.message, /--database-url: invalid port "99999"/)
  })

  it('fails with E_CONFIG (exit 2) when the --config file does not exist', async () => {
    const error = await configFailure(loadConfig({configPath: 'no-such-file.yaml'}, {DATABASE_URL: 'postgres://u@h/db'}, project()))
    assert.equal(error.code, 'E_CONFIG')
    assert.equal(error.exit, 2)
    assert.match(error.message, /config file not found: no-such-file\.yaml/)
  })
})

describe('loadConfig: warnings', () => {
  it('warns about an unknown key in the database section, naming it and its line', async () => {
    const yaml = 'database:\n  url: postgres://u@h/db\n  max_conections: 3\n'
    const dir = project({'config.yaml': yaml})
    const config = await loadConfig({}, {}, dir)
    assert.equal(config.warnings.length, 1)
    assert.equal(config.warnings[0], `unknown key "database.max_conections" in ${path.join(dir, 'config.yaml')} (line 3)`)
    assert.equal(config.connection.maxConnections, 7)
  })

  it('warns about unknown keys in the migrations and tools sections', async () => {
    const yaml = 'database:\n  url: postgres://u@h/db\nmigrations:\n  lock_timout: 1\ntools:\n  pg_dump: /x\n'
    const config = await loadConfig({}, {}, project({'config.yaml': yaml}))
    assert.equal(config.warnings.length, 2)
    assert.match(config.warnings[0], /unknown key "migrations\.lock_timout"/)
    assert.match(config.warnings[1], /unknown key "tools\.pg_dump"/)
  })

  it('warns about an unknown top-level key in tw-db.config.yaml', async () => {
    const yaml = 'databse:\n  url: postgres://typo@h/db\ndatabase:\n  url: postgres://u@h/db\n'
    const dir = project({'tw-db.config.yaml': yaml})
    const config = await loadConfig({}, {}, dir)
    assert.deepEqual(config.warnings, [`unknown key "databse" in ${path.join(dir, 'tw-db.config.yaml')} (line 1)`])
  })

  it('warns about an unknown top-level key in a .tw-dbrc.json, without a line', async () => {
    const dir = project({'.tw-dbrc.json': JSON.stringify({database: {url: 'postgres://u@h/db'}, extra: true})})
    const config = await loadConfig({}, {}, dir)
    assert.deepEqual(config.warnings, [`unknown key "extra" in ${path.join(dir, '.tw-dbrc.json')}`])
  })

  it('warns when a file holding a password is readable by others (mode 0644)', async () => {
    const dir = project({'config.yaml': 'meta:\n  postgres_url: postgres://u:file-pw@h/db\n'}, 0o644)
    const config = await loadConfig({}, {}, dir)
    const file = path.join(dir, 'config.yaml')
    assert.equal(config.warnings.length, 1)
    assert.ok(config.warnings[0].includes(file), config.warnings[0])
    assert.match(config.warnings[0], /readable by others \(mode 644\)/)
    assert.match(config.warnings[0], /chmod 600/)
    assert.ok(!config.warnings[0].includes('file-pw'))
  })

  it('does not warn about a file holding a password with mode 0600', async () => {
    const config = await loadConfig({}, {}, project({'config.yaml': 'meta:\n  postgres_url: postgres://u:file-pw@h/db\n'}, 0o600))
    assert.deepEqual(config.warnings, [])
  })

  it('does not warn about a mode 0644 file that holds no password', async () => {
    const config = await loadConfig({}, {}, project({'config.yaml': 'meta:\n  postgres_url: postgres://u@h/db\n'}, 0o644))
    assert.deepEqual(config.warnings, [])
  })

  it('expands a ${VAR} password in a mode 0644 file', async () => {
    const dir = project({'config.yaml': 'database:\n  url: postgres://u:${TW_PW}@h/db\n'}, 0o644)
    const config = await loadConfig({}, {TW_PW: 'from-the-env'}, dir)
    assert.equal(config.connection.password, 'from-the-env')
    // The file itself holds no password, so its mode is no concern.
    assert.deepEqual(config.warnings, [])
  })
})

describe('loadConfig: pool size and timeouts', () => {
  const yaml = 'database:\n  url: postgres://u@h/db\n  max_connections: 3\n'

  it('takes database.max_connections from the file', async () => {
    const config = await loadConfig({}, {}, project({'config.yaml': yaml}))
    assert.equal(config.connection.maxConnections, 3)
  })

  it('takes MAX_DB_CONNECTIONS over the file', async () => {
    const config = await loadConfig({}, {MAX_DB_CONNECTIONS: '11'}, project({'config.yaml': yaml}))
    assert.equal(config.connection.maxConnections, 11)
  })

  it('takes --max-connections over MAX_DB_CONNECTIONS and the file', async () => {
    const config = await loadConfig({maxConnections: 2}, {MAX_DB_CONNECTIONS: '11'}, project({'config.yaml': yaml}))
    assert.equal(config.connection.maxConnections, 2)
  })

  it('rejects a MAX_DB_CONNECTIONS that is not a whole number', async () => {
    const error = await configFailure(loadConfig({}, {MAX_DB_CONNECTIONS: 'many', DATABASE_URL: 'postgres://u@h/db'}, project()))
    assert.equal(error.code, 'E_CONFIG')
    assert.equal(error.exit, 2)
    assert.match(error.message, /MAX_DB_CONNECTIONS must be a whole number >= 1, got "many"/)
  })

  it('rejects --max-connections 0', async () => {
    const error = await configFailure(loadConfig({maxConnections: 0, databaseUrl: 'postgres://u@h/db'}, {}, project()))
    assert.equal(error.code, 'E_CONFIG')
    assert.match(error.message, /--max-connections must be a whole number >= 1, got 0/)
  })

  it('takes --lock-timeout over migrations.lock_timeout', async () => {
    const dir = project({'config.yaml': 'database:\n  url: postgres://u@h/db\nmigrations:\n  lock_timeout: 30\n'})
    assert.equal((await loadConfig({}, {}, dir)).migrations.lockTimeout, 30)
    assert.equal((await loadConfig({lockTimeout: 5}, {}, dir)).migrations.lockTimeout, 5)
  })

  it('takes PG_BIN_DIR from the environment when the file sets no tools.pg_bin_dir', async () => {
    const config = await loadConfig({databaseUrl: 'postgres://u@h/db'}, {PG_BIN_DIR: '/opt/pg/bin'}, project())
    assert.equal(config.tools.pgBinDir, '/opt/pg/bin')
  })
})

describe('connectionFromUrl', () => {
  const defaults = {maxConnections: 7, connectTimeout: 10, source: 'flag' as const, sourceDetail: '--database-url'}

  it('parses user, password, host, port and database', () => {
    const c = connectionFromUrl('postgres://antiraid:secret@db.internal:6543/antiraid', defaults, {})
    assert.deepEqual(
      {user: c.user, password: c.password, host: c.host, port: c.port, database: c.database, socketPath: c.socketPath, ssl: c.ssl},
      {user: 'antiraid', password: 'secret', host: 'db.internal', port: 6543, database: 'antiraid', socketPath: undefined, ssl: 'prefer'},
    )
    assert.equal(c.display, 'postgres://antiraid:***@db.internal:6543/antiraid')
    assert.equal(c.maxConnections, 7)
    assert.equal(c.source, 'flag')
  })

  it('accepts the postgresql:// scheme', () => {
    assert.equal(connectionFromUrl('postgresql://u@h/d', defaults, {}).host, 'h')
  })

  it('defaults the port to 5432', () => {
    assert.equal(connectionFromUrl('postgres://u:p@h/d', defaults, {}).port, 5432)
  })

  it('defaults the database to the user name and the host to localhost', () => {
    const c = connectionFromUrl('postgres://someone@', defaults, {})
    assert.equal(c.host, 'localhost')
    assert.equal(c.database, 'someone')
  })

  it('percent-decodes user, password and database', () => {
    const c = connectionFromUrl('postgres://me%40corp:p%40ss%3Aw%25rd@h/my%20db', defaults, {})
    assert.equal(c.user, 'me@corp')
    assert.equal(c.password, 'p@ss:w%rd')
    assert.equal(c.database, 'my db')
  })

  it('takes an unencoded password holding "@", ":" and "%" as typed', () => {
    const c = connectionFromUrl('postgres://u:p@ss:w%rd@host:5432/db', defaults, {})
    assert.equal(c.user, 'u')
    assert.equal(c.password, 'p@ss:w%rd')
    assert.equal(c.host, 'host')
    assert.equal(c.port, 5432)
    assert.equal(c.database, 'db')
    assert.ok(!c.display.includes('p@ss'))
  })

  it('registers the password so that it is redacted everywhere afterwards', () => {
    connectionFromUrl('postgres://u:Registered-By-Parse@h/db', defaults, {})
    assert.equal(redact('oops: Registered-By-Parse'), 'oops: ***')
  })

  it('reads sslmode from the query string', () => {
    assert.equal(connectionFromUrl('postgres://u:p@h/d?sslmode=require', defaults, {}).ssl, 'require')
  })

  it('lets the URL sslmode win over the configured ssl default', () => {
    assert.equal(connectionFromUrl('postgres://u@h/d?sslmode=disable', {...defaults, ssl: 'verify-full'}, {}).ssl, 'disable')
  })

  it('rejects an unknown sslmode', () => {
    assert.throws(() => connectionFromUrl('postgres://u@h/d?sslmode=sometimes', defaults, {}), /invalid sslmode "sometimes"/)
  })

  it('takes ?host=/dir as a unix socket directory', () => {
    const c = connectionFromUrl('postgres://u:p@/antiraid?host=/var/run/postgresql', defaults, {})
    assert.equal(c.host, '/var/run/postgresql')
    assert.equal(c.socketPath, '/var/run/postgresql')
    assert.equal(c.database, 'antiraid')
    assert.equal(c.display, 'postgres://u:***@/antiraid?host=/var/run/postgresql&port=5432')
  })

  it('parses a bracketed IPv6 host and its port', () => {
    const c = connectionFromUrl('postgres://u@[2001:db8::1]:6000/d', defaults, {})
    assert.equal(c.host, '2001:db8::1')
    assert.equal(c.port, 6000)
    assert.equal(c.display, 'postgres://u@[2001:db8::1]:6000/d')
  })

  it('rejects a port that is not a number or out of range', () => {
    assert.throws(() => connectionFromUrl('postgres://u@h:abc/d', defaults, {}), /invalid port "abc"/)
    // No "@": what looks like a port may be a password, so it is not shown.
    assert.throws(
      () => connectionFromUrl('postgres://u:S3cret/d', defaults, {}),
      (error: Error) => /invalid port in the URL.*lacks "@host"/.test(error.message) && !error.message.includes('S3cret'),
    )
    assert.throws(() => connectionFromUrl('', defaults, {}), /^Error: is empty \(expected postgres:/)
    assert.throws(() => connectionFromUrl('postgres://u@h:0/d', defaults, {}), /invalid port "0"/)
    assert.throws(() => connectionFromUrl('postgres://u@h:65536/d', defaults, {}), /invalid port "65536"/)
  })

  it('rejects a scheme other than postgres without echoing the password', () => {
    assert.throws(
      () => connectionFromUrl('mysql://u:leaky-pw@h/d', defaults, {}),
      (error: Error) => /not a PostgreSQL URL/.test(error.message) && error.message.includes('"mysql:') && !error.message.includes('leaky-pw'),
    )
  })

  it('takes connect_timeout from the query string and rejects a bad one', () => {
    assert.equal(connectionFromUrl('postgres://u@h/d?connect_timeout=3', defaults, {}).connectTimeout, 3)
    assert.throws(() => connectionFromUrl('postgres://u@h/d?connect_timeout=never', defaults, {}), /invalid connect_timeout/)
  })

  it('fills the missing parts from PGUSER, PGPASSWORD, PGPORT and PGDATABASE', () => {
    const c = connectionFromUrl('postgres://h', defaults, {PGUSER: 'eu', PGPASSWORD: 'ep', PGPORT: '7000', PGDATABASE: 'edb'})
    assert.deepEqual([c.host, c.user, c.password, c.port, c.database], ['h', 'eu', 'ep', 7000, 'edb'])
  })
})
