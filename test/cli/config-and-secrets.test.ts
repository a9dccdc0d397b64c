import assert from 'node:assert/strict'
import {chmodSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {describe, it} from 'node:test'

import {FIXTURES, parseJson, runCli, type CliResult} from '../support/cli.js'
import {PASSWORD, PASSWORD_ROLE, testMajors, useServers} from '../support/postgres.js'
import {ledgerRows} from '../support/schema.js'
import {temporaryDirectory} from '../support/temp.js'

const servers = useServers()

function assertNoSecret(result: CliResult, what: string): void {
  for (const form of [PASSWORD, encodeURIComponent(PASSWORD)]) {
    assert.ok(!result.stdout.includes(form), `${what}: password on stdout:\n${result.stdout}`)
    assert.ok(!result.stderr.includes(form), `${what}: password on stderr:\n${result.stderr}`)
  }
}

describe('configuration without a server', () => {
  it('refuses with exit 2 and lists the ways to configure a database when nothing is configured in CI', async () => {
    const result = await runCli(['status'], {env: {CI: 'true'}})
    assert.equal(result.code, 2)
    assert.match(result.stderr, /^Error: no database configured$/m)
    assert.match(result.stderr, /--database-url/)
    assert.match(result.stderr, /DATABASE_URL/)
    assert.match(result.stderr, /config\.yaml/)
  })

  it('names the file and line of invalid YAML', async () => {
    const dir = temporaryDirectory()
    writeFileSync(path.join(dir, 'config.yaml'), 'meta:\n  postgres_url: "postgres://x@y/z"\n  bad: [unclosed\n')
    const result = await runCli(['status'], {cwd: dir})
    assert.equal(result.code, 2)
    assert.match(result.stderr, /invalid YAML in .*config\.yaml:\d+:\d+/)
  })

  it('reports every bad value together, with key and line, and an unset ${VAR}', async () => {
    const dir = temporaryDirectory()
    writeFileSync(
      path.join(dir, 'tw-db.config.yaml'),
      'database:\n  url: postgres://u:${NOT_SET_ANYWHERE}@h/d\n  max_connections: lots\n  ssl: sometimes\n',
    )
    const result = await runCli(['status'], {cwd: dir})
    assert.equal(result.code, 2)
    assert.match(result.stderr, /database\.url uses \$\{NOT_SET_ANYWHERE\}, which is not set/)
    assert.match(result.stderr, /database\.max_connections must be a whole number >= 1, got "lots" \(line 3\)/)
    assert.match(result.stderr, /database\.ssl must be one of .* \(line 4\)/)
  })

  it('rejects an unknown flag with exit 2', async () => {
    const result = await runCli(['migrate', '--no-such-flag'])
    assert.equal(result.code, 2)
    assert.match(result.stderr, /Error: .*no-such-flag/)
  })

  it('rejects a --config path that does not exist with exit 2', async () => {
    const result = await runCli(['status', '--config', '/nonexistent/tw-db.yaml'])
    assert.equal(result.code, 2)
    assert.match(result.stderr, /config file not found: \/nonexistent\/tw-db\.yaml/)
  })

  it('gives one clear line with a hint when nothing listens on the port, without the password', async () => {
    const result = await runCli(['status', '--database-url', `postgres://someone:${encodeURIComponent(PASSWORD)}@127.0.0.1:1/db`, '--json'])
    assert.equal(result.code, 1)
    const doc = parseJson(result)
    assert.equal(doc.error.code, 'E_UNREACHABLE')
    assert.match(doc.error.message, /connection refused by postgres:\/\/someone:\*\*\*@127\.0\.0\.1:1\/db/)
    assert.match(doc.error.hint, /Is PostgreSQL running/)
    assertNoSecret(result, 'unreachable')
  })
})

for (const major of testMajors()) {
  describe(`configuration and secrets on PostgreSQL ${major}`, () => {
    it('reads meta.postgres_url from Template Worker\'s config.yaml, ignoring its other keys silently', async () => {
      const db = await servers.get(major)!.createDatabase()
      const dir = temporaryDirectory()
      writeFileSync(
        path.join(dir, 'config.yaml'),
        `discord_auth:\n  token: abc\nmeta:\n  postgres_url: ${db.url}\n  proxy: http://x\nobject_storage:\n  type: local\n`,
      )
      const result = await runCli(['migrate'], {cwd: dir})
      assert.equal(result.code, 0, result.stderr)
      assert.equal(result.stderr, '')
      assert.equal((await ledgerRows(db.sql)).length, 5)
    })

    it('lets the flag beat DATABASE_URL and DATABASE_URL beat the config file', async () => {
      const db = await servers.get(major)!.createDatabase()
      const dir = temporaryDirectory()
      const dead = 'postgres://nobody@127.0.0.1:1/nothing'
      writeFileSync(path.join(dir, 'config.yaml'), `meta:\n  postgres_url: ${dead}\n`)
      const fromEnv = await runCli(['status', '--json'], {cwd: dir, env: {DATABASE_URL: db.url}})
      assert.equal(fromEnv.code, 0, fromEnv.stderr)
      const fromFlag = await runCli(['status', '--json', '--database-url', db.url], {cwd: dir, env: {DATABASE_URL: dead}})
      assert.equal(fromFlag.code, 0, fromFlag.stderr)
      const fromFile = await runCli(['status'], {cwd: dir})
      assert.equal(fromFile.code, 1)
      assert.match(fromFile.stderr, /connection refused by postgres:\/\/nobody@127\.0\.0\.1:1\/nothing/)
    })

    it('uses PGHOST/PGPORT/PGUSER/PGDATABASE when nothing else is configured', async () => {
      const server = servers.get(major)!
      const db = await server.createDatabase()
      const result = await runCli(['status', '--json'], {
        env: {PGHOST: server.host, PGPORT: String(server.port), PGUSER: 'postgres', PGDATABASE: db.name},
      })
      assert.equal(result.code, 0, result.stderr)
      assert.equal(parseJson(result).summary.pending, 5)
    })

    it('warns about an unknown key and a password file readable by others', async () => {
      const db = await servers.get(major)!.createDatabase()
      const dir = temporaryDirectory()
      const file = path.join(dir, 'tw-db.config.yaml')
      writeFileSync(file, `database:\n  url: ${db.passwordUrl}\n  max_conections: 3\n`)
      chmodSync(file, 0o644)
      const result = await runCli(['status'], {cwd: dir})
      assert.equal(result.code, 0, result.stderr)
      assert.match(result.stderr, /Warning: unknown key "database\.max_conections" in .*tw-db\.config\.yaml \(line 3\)/)
      assert.match(result.stderr, /readable by others \(mode 644\); run chmod 600/)
      assertNoSecret(result, 'config warning')
    })

    it('never prints the password of the URL: success, JSON, failures and server errors', async () => {
      const server = servers.get(major)!
      const db = await server.createDatabase()
      // uuid-ossp is not a trusted extension before PostgreSQL 13: the owner installs it.
      await db.sql`create extension if not exists "uuid-ossp"`
      const url = db.passwordUrl
      const rawUrl = `postgres://${PASSWORD_ROLE}:${PASSWORD}@${server.host}:${server.port}/${db.name}`
      const runs: Array<[string, CliResult]> = [
        ['migrate', await runCli(['migrate', '--database-url', url])],
        ['migrate --json', await runCli(['migrate', '--database-url', url, '--json'])],
        ['status (unencoded password with @ : % /)', await runCli(['status', '--database-url', rawUrl])],
        ['status --json from DATABASE_URL', await runCli(['status', '--json'], {env: {DATABASE_URL: url}})],
        ['failing migration --json', await runCli(['migrate', '--database-url', url, '--json', '--migrations-dir', path.join(FIXTURES, 'failing')])],
        ['failing migration --verbose', await runCli(['migrate', '--database-url', url, '--verbose', '--migrations-dir', path.join(FIXTURES, 'failing')])],
        ['missing database', await runCli(['status', '--database-url', url.replace(db.name, 'no_such_db'), '--verbose'])],
        ['missing database --json', await runCli(['status', '--database-url', url.replace(db.name, 'no_such_db'), '--json'])],
        ['wrong password', await runCli(['status', '--database-url', `postgres://${PASSWORD_ROLE}:${encodeURIComponent(PASSWORD + 'x')}@${server.host}:${server.port}/${db.name}`])],
        ['password in PGPASSWORD', await runCli(['status'], {env: {PGHOST: server.host, PGPORT: String(server.port), PGUSER: PASSWORD_ROLE, PGPASSWORD: PASSWORD, PGDATABASE: 'nope'}})],
        ['bad URL', await runCli(['status', '--database-url', `postgres://${PASSWORD_ROLE}:${PASSWORD}@${server.host}:notaport/db`])],
        // oclif's debug lines show the command line.
        ['DEBUG=*', await runCli(['status', '--database-url', url], {env: {DEBUG: '*'}})],
        ['DEBUG=* unencoded', await runCli(['status', '--database-url', rawUrl], {env: {DEBUG: '*'}})],
      ]
      assert.equal(runs[0][1].code, 0, runs[0][1].stderr)
      assert.equal(runs[2][1].code, 0, `an unencoded password with @ : % / must still connect: ${runs[2][1].stderr}`)
      assert.equal(parseJson(runs[4][1]).error.code, 'E_MIGRATION_FAILED')
      assert.equal(runs[6][1].code, 1)
      assert.match(runs[6][1].stderr, /database does not exist/)
      assert.equal(parseJson(runs[7][1]).error.code, 'E_DATABASE_MISSING')
      assert.equal(runs[8][1].code, 1)
      assert.match(runs[8][1].stderr, /authentication failed for postgres:\/\/tw_secret_user:\*\*\*@/)
      assert.equal(runs[10][1].code, 2)
      assert.match(runs[11][1].stderr, /oclif:config runCommand status .*postgres:\/\/tw_secret_user:\*\*\*@/)
      for (const [what, result] of runs) assertNoSecret(result, what)
      // Wrong password variant must not leak either.
      assert.ok(!runs[8][1].stderr.includes(encodeURIComponent(PASSWORD + 'x')))
    })
  })
}
