import assert from 'node:assert/strict'
import {randomBytes} from 'node:crypto'
import {writeFileSync} from 'node:fs'
import {createServer, type Socket} from 'node:net'
import path from 'node:path'
import {describe, it} from 'node:test'
import {setTimeout as sleep} from 'node:timers/promises'

import {collect, parseJson, runCli, spawnCli, type CliResult} from '../support/cli.js'
import {PASSWORD, PASSWORD_ROLE, freePort, startServer, testMajors, useServers, type TestDatabase, type TestServer} from '../support/postgres.js'
import {temporaryDirectory} from '../support/temp.js'

const [FIRST_MAJOR] = testMajors()
const servers = useServers(testMajors())

const STEP_NAMES = [
  'config',
  'dns',
  'tcp',
  'tls',
  'authentication',
  'database',
  'server-version',
  'types',
  'uuid-ossp',
  'schema-privilege',
  'recovery',
  'pooler',
  'pool-sizing',
  'settings',
]

interface Step {
  name: string
  title: string
  status: 'pass' | 'warn' | 'fail' | 'skipped'
  ok: boolean | null
  ms: number | null
  detail: string
  hint: string | null
}

interface Report {
  ok: boolean
  steps: Step[]
  server: {version: string | null; versionNum: number | null}
}

function step(report: Report, name: string): Step {
  const found = report.steps.find((s) => s.name === name)
  assert.ok(found, `step ${name} is in the report`)
  return found
}

/** Every step after `failed` that needs it, directly or not, is reported as not run. */
function assertNotRunAfter(report: Report, failed: string): void {
  const index = STEP_NAMES.indexOf(failed)
  for (const s of report.steps.slice(index + 1)) {
    assert.equal(s.status, 'skipped', `${s.name} is not run after ${failed} failed`)
    assert.equal(s.ok, null)
    assert.equal(s.ms, null)
    assert.match(s.detail, /^not run: needs /)
  }
}

function assertFailsAt(result: CliResult, name: string): Report {
  assert.equal(result.code, 1, result.stderr)
  const report = parseJson<Report>(result)
  assert.equal(report.ok, false)
  const failed = report.steps.filter((s) => s.status === 'fail')
  assert.deepEqual(failed.map((s) => s.name), [name], JSON.stringify(report.steps, null, 2))
  assert.equal(failed[0].ok, false)
  assert.ok(failed[0].hint, 'a failing step carries a hint')
  return report
}

function assertNoSecret(result: CliResult, ...secrets: string[]): void {
  for (const secret of secrets) {
    for (const form of [secret, encodeURIComponent(secret)]) {
      assert.ok(!result.stdout.includes(form), `stdout shows the password: ${result.stdout}`)
      assert.ok(!result.stderr.includes(form), `stderr shows the password: ${result.stderr}`)
    }
  }
}

/** A TCP service on 127.0.0.1 that is not PostgreSQL: `answer` is written to every client (nothing when undefined). */
async function fakeService(answer?: string): Promise<{port: number; close: () => Promise<void>}> {
  const sockets: Socket[] = []
  const server = createServer((socket) => {
    sockets.push(socket)
    socket.on('error', () => undefined)
    if (answer !== undefined) socket.once('data', () => socket.write(answer))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return {
    port: (server.address() as {port: number}).port,
    close: () => {
      for (const socket of sockets) socket.destroy()
      return new Promise((resolve) => server.close(() => resolve()))
    },
  }
}

/** A login role with a password and no privileges beyond PUBLIC's. */
async function roleWithoutPrivileges(server: TestServer): Promise<{name: string; password: string}> {
  const name = `tw_plain_${randomBytes(4).toString('hex')}`
  const password = `pw-${randomBytes(6).toString('hex')}`
  await server.admin.unsafe(`create role ${name} login password '${password}'`)
  return {name, password}
}

/**
 * A database as a deployment has it: uuid-ossp created once by an administrator, since an
 * ordinary role cannot create it on PostgreSQL 12 (it is a trusted extension only from 13).
 */
async function healthyDatabase(server: TestServer): Promise<TestDatabase> {
  const db = await server.createDatabase()
  await db.sql.unsafe('create extension "uuid-ossp"')
  return db
}

for (const major of testMajors()) {
  describe(`check-connection on a healthy PostgreSQL ${major}`, () => {
    it('passes every step, exits 0, and never shows the password', async () => {
      const db = await healthyDatabase(servers.get(major)!)
      const result = await runCli(['check-connection', '--database-url', db.passwordUrl])
      assert.equal(result.code, 0, result.stderr)
      const lines = result.stdout.trimEnd().split('\n')
      for (const title of ['config resolved', 'DNS', 'TCP connect', 'TLS', 'authentication', 'database exists', 'server version', 'JSONB and timestamptz', 'uuid-ossp', 'CREATE on schema', 'primary or standby', 'connection pooler', 'pool sizing', 'settings']) {
        const line = lines.find((l) => l.startsWith(`✔ ${title} `))
        assert.ok(line, `a passing line for ${title} in:\n${result.stdout}`)
        assert.match(line, / \d+(\.\d+)? m?s  /, `${title} shows its time`)
      }
      assert.match(result.stdout, new RegExp(`postgres://${PASSWORD_ROLE}:\\*\\*\\*@127\\.0\\.0\\.1:\\d+/${db.name} from --database-url`))
      assert.match(result.stdout, /127\.0\.0\.1 is an IP address: no lookup/)
      assert.match(result.stdout, new RegExp(`logged in as ${PASSWORD_ROLE} without TLS`))
      assert.match(result.stdout, new RegExp(`PostgreSQL ${major}\\.\\d+ \\(${major}\\d{4}\\)`))
      assert.match(result.stdout, /max_connections=200, shared_buffers=\S+, work_mem=\S+, ssl=off/)
      assert.match(result.stdout, /^All required checks passed\.$/m)
      assert.doesNotMatch(result.stdout, /hint:/)
      assert.equal(result.stderr, '')
      assertNoSecret(result, PASSWORD)
    })

    it('prints the documented JSON document and nothing else on stdout', async () => {
      const db = await healthyDatabase(servers.get(major)!)
      const result = await runCli(['check-connection', '--database-url', db.passwordUrl, '--json'])
      assert.equal(result.code, 0, result.stderr)
      const report = parseJson<Report>(result)
      assert.deepEqual(Object.keys(report).sort(), ['ok', 'server', 'steps'])
      assert.equal(report.ok, true)
      assert.deepEqual(report.steps.map((s) => s.name), STEP_NAMES)
      for (const s of report.steps) {
        for (const key of ['name', 'ok', 'ms', 'detail', 'hint', 'status']) assert.ok(key in s, `${s.name} has ${key}`)
        assert.equal(s.status, 'pass', `${s.name}: ${s.detail}`)
        assert.equal(s.ok, true)
        assert.equal(typeof s.ms, 'number')
        assert.equal(typeof s.detail, 'string')
        assert.equal(s.hint, null)
      }
      assert.deepEqual(Object.keys(report.server).sort(), ['version', 'versionNum'])
      assert.match(report.server.version!, new RegExp(`^${major}\\.\\d+`))
      assert.equal(Math.floor(report.server.versionNum! / 10000), major)
      assert.equal(result.stderr, '')
      assertNoSecret(result, PASSWORD)
    })
  })
}

describe('check-connection over a unix socket', () => {
  it('skips DNS, connects to the socket file and does not use TLS', async () => {
    const server = servers.get(FIRST_MAJOR)!
    const socketDir = path.dirname(server.dataDir!)
    const result = await runCli(['check-connection', '--database-url', `postgres://postgres@/postgres?host=${socketDir}&port=${server.port}`, '--json'])
    assert.equal(result.code, 0, result.stdout)
    const report = parseJson<Report>(result)
    assert.equal(step(report, 'dns').detail, `unix socket directory ${socketDir}: no lookup`)
    assert.equal(step(report, 'dns').status, 'pass')
    assert.equal(step(report, 'tcp').detail, `connected to ${socketDir}/.s.PGSQL.${server.port}`)
    assert.match(step(report, 'tls').detail, /not used on a unix socket/)
    assert.match(step(report, 'authentication').detail, /over a unix socket/)
  })
})

describe('check-connection finds what is broken, says what to do, and exits 1', () => {
  it('nothing listening on the port: TCP connect fails, nothing after it runs', async () => {
    const port = await freePort()
    const result = await runCli(['check-connection', '--database-url', `postgres://someone:hunter2-secret@127.0.0.1:${port}/db`, '--json'])
    const report = assertFailsAt(result, 'tcp')
    assert.equal(step(report, 'dns').status, 'pass')
    assert.match(step(report, 'tcp').detail, new RegExp(`connection refused by 127\\.0\\.0\\.1:${port}`))
    assert.match(step(report, 'tcp').hint!, /Is PostgreSQL running/)
    assert.match(step(report, 'tcp').hint!, /firewall/)
    assertNotRunAfter(report, 'tcp')
    assert.deepEqual(report.server, {version: null, versionNum: null})
    assertNoSecret(result, 'hunter2-secret')

    const human = await runCli(['check-connection', '--database-url', `postgres://someone:hunter2-secret@127.0.0.1:${port}/db`])
    assert.equal(human.code, 1)
    assert.match(human.stdout, /^✘ TCP connect /m)
    assert.match(human.stdout, /^- TLS +not run: needs TCP connect$/m)
    assert.match(human.stdout, /^- settings +not run: needs database exists$/m)
    assert.match(human.stdout, /^Failed: TCP connect; 11 steps not run\.$/m)
    assert.match(human.stderr, /^Error: check-connection failed at TCP connect: connection refused/m)
    assert.match(human.stderr, /^Hint: Is PostgreSQL running/m)
    assertNoSecret(human, 'hunter2-secret')
  })

  it('an unknown host name: DNS fails', async () => {
    const result = await runCli(['check-connection', '--database-url', 'postgres://someone@no-such-host.invalid:5432/db', '--json'])
    const report = assertFailsAt(result, 'dns')
    assert.match(step(report, 'dns').detail, /no-such-host\.invalid/)
    assert.match(step(report, 'dns').hint!, /host in --database-url/)
    assertNotRunAfter(report, 'dns')
  })

  it('the URL from config.yaml: the hint names the file and meta.postgres_url', async () => {
    const port = await freePort()
    const dir = temporaryDirectory()
    writeFileSync(path.join(dir, 'config.yaml'), `meta:\n  postgres_url: postgres://antiraid@127.0.0.1:${port}/antiraid\n`)
    const result = await runCli(['check-connection', '--json'], {cwd: dir})
    const report = assertFailsAt(result, 'tcp')
    assert.match(step(report, 'config').detail, /config\.yaml \(meta\.postgres_url\)/)
    assert.match(step(report, 'tcp').hint!, /Check the URL in \S*config\.yaml \(meta\.postgres_url\)/)
  })

  it('a service that is not PostgreSQL: TLS fails on its answer', async () => {
    const http = await fakeService('HTTP/1.1 400 Bad Request\r\n\r\n')
    try {
      const result = await runCli(['check-connection', '--database-url', `postgres://someone@127.0.0.1:${http.port}/db`, '--json'])
      const report = assertFailsAt(result, 'tls')
      assert.match(step(report, 'tls').detail, /does not speak the PostgreSQL protocol \(it answered 0x48 'H'\)/)
      assert.match(step(report, 'tls').hint!, /Wrong port\?/)
      assertNotRunAfter(report, 'tls')
    } finally {
      await http.close()
    }
  })

  it('a port that accepts and never answers: TLS fails within connect_timeout', async () => {
    const silent = await fakeService()
    try {
      const started = Date.now()
      const result = await runCli(['check-connection', '--database-url', `postgres://someone@127.0.0.1:${silent.port}/db?connect_timeout=1`, '--json'])
      const report = assertFailsAt(result, 'tls')
      assert.match(step(report, 'tls').detail, /did not answer the SSL request within 1 s/)
      assert.ok(Date.now() - started < 20_000, 'gives up after connect_timeout, not the default 10 s per try')
    } finally {
      await silent.close()
    }
  })

  it('sslmode=require against a server without TLS: TLS fails with the SSL mode hint', async () => {
    const server = servers.get(FIRST_MAJOR)!
    const result = await runCli(['check-connection', '--database-url', `${server.adminUrl}?sslmode=require`, '--json'])
    const report = assertFailsAt(result, 'tls')
    assert.match(step(report, 'tls').detail, /does not offer TLS, but sslmode=require demands it/)
    assert.match(step(report, 'tls').hint!, /SSL mode/)
    assertNotRunAfter(report, 'tls')
  })

  it('a wrong password (scram): authentication fails with the password and pg_hba.conf hint', async () => {
    const db = await servers.get(FIRST_MAJOR)!.createDatabase()
    const wrong = 'not-the-Secret-42'
    const url = db.passwordUrl.replace(encodeURIComponent(PASSWORD), wrong)
    const result = await runCli(['check-connection', '--database-url', url, '--json'])
    const report = assertFailsAt(result, 'authentication')
    for (const name of ['dns', 'tcp', 'tls']) assert.equal(step(report, name).status, 'pass')
    assert.match(step(report, 'authentication').detail, /password authentication failed for user "tw_secret_user" \(SQLSTATE 28P01\)/)
    assert.match(step(report, 'authentication').hint!, /password/)
    assert.match(step(report, 'authentication').hint!, /pg_hba\.conf/)
    assertNotRunAfter(report, 'authentication')
    assert.deepEqual(report.server, {version: null, versionNum: null})
    assertNoSecret(result, wrong, PASSWORD)

    const human = await runCli(['check-connection', '--database-url', url])
    assert.equal(human.code, 1)
    assert.match(human.stderr, /^Error: check-connection failed at authentication: password authentication failed/m)
    assertNoSecret(human, wrong, PASSWORD)
  })

  it('a missing database: authentication passes, database exists fails with CREATE DATABASE', async () => {
    const server = servers.get(FIRST_MAJOR)!
    const url = `postgres://${PASSWORD_ROLE}:${encodeURIComponent(PASSWORD)}@127.0.0.1:${server.port}/no_such_database`
    const result = await runCli(['check-connection', '--database-url', url, '--json'])
    const report = assertFailsAt(result, 'database')
    assert.equal(step(report, 'authentication').status, 'pass')
    assert.match(step(report, 'database').detail, /database "no_such_database" does not exist \(SQLSTATE 3D000\)/)
    assert.match(step(report, 'database').hint!, /CREATE DATABASE no_such_database OWNER tw_secret_user;/)
    assertNotRunAfter(report, 'database')
    assertNoSecret(result, PASSWORD)
  })

  it('a role without CREATE on the schema: that step fails, the independent ones still run', async () => {
    const server = servers.get(FIRST_MAJOR)!
    const db = await server.createDatabase()
    const role = await roleWithoutPrivileges(server)
    // PostgreSQL 12-14 let PUBLIC create in public; take that away. The extension is there already.
    await db.sql.unsafe('revoke create on schema public from public')
    await db.sql.unsafe('create extension "uuid-ossp"')
    const url = `postgres://${role.name}:${role.password}@127.0.0.1:${server.port}/${db.name}`
    const result = await runCli(['check-connection', '--database-url', url, '--json'])
    const report = assertFailsAt(result, 'schema-privilege')
    assert.match(step(report, 'schema-privilege').detail, new RegExp(`${role.name} may not CREATE in schema public`))
    assert.match(step(report, 'schema-privilege').hint!, new RegExp(`GRANT CREATE ON SCHEMA public TO ${role.name};`))
    assert.match(step(report, 'uuid-ossp').detail, /^installed \(version 1\.1, schema public\)$/)
    for (const name of ['recovery', 'pooler', 'pool-sizing', 'settings']) assert.equal(step(report, name).status, 'pass', name)
    assertNoSecret(result, role.password)
  })

  it('uuid-ossp missing and not creatable by this role: fails with CREATE EXTENSION', async () => {
    const server = servers.get(FIRST_MAJOR)!
    const db = await server.createDatabase()
    const role = await roleWithoutPrivileges(server)
    await db.sql.unsafe(`grant create on schema public to ${role.name}`)
    const url = `postgres://${role.name}:${role.password}@127.0.0.1:${server.port}/${db.name}`
    const report = assertFailsAt(await runCli(['check-connection', '--database-url', url, '--json']), 'uuid-ossp')
    assert.match(step(report, 'uuid-ossp').detail, /available \(version 1\.1\) but not installed/)
    assert.match(step(report, 'uuid-ossp').hint!, new RegExp(`CREATE EXTENSION "uuid-ossp"; in database ${db.name}`))

    if (FIRST_MAJOR >= 13) {
      // A trusted extension since 13: CREATE on the database is enough.
      await db.sql.unsafe(`grant create on database ${db.name} to ${role.name}`)
      const granted = await runCli(['check-connection', '--database-url', url, '--json'])
      assert.equal(granted.code, 0, granted.stdout)
      assert.match(step(parseJson(granted), 'uuid-ossp').detail, new RegExp(`not installed; migrate creates it \\(trusted extension, ${role.name} may CREATE in the database\\)`))
    }

    // A superuser could create it: then it passes.
    const asSuperuser = await runCli(['check-connection', '--database-url', db.url, '--json'])
    assert.equal(asSuperuser.code, 0, asSuperuser.stdout)
    assert.match(step(parseJson(asSuperuser), 'uuid-ossp').detail, /not installed; migrate creates it \(postgres is a superuser\)/)
  })

  it('a config problem is still exit 2, and so is a bad --workers', async () => {
    const bad = await runCli(['check-connection', '--database-url', 'mysql://u@127.0.0.1/db'])
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /not a PostgreSQL URL/)
    const workers = await runCli(['check-connection', '--database-url', 'postgres://u@127.0.0.1/db', '--workers', '0'])
    assert.equal(workers.code, 2)
  })
})

describe('check-connection warnings and --wait', () => {
  it('a standby is a warning (exit 0), with a note that migrate refuses it', async () => {
    const standby = await startServer(FIRST_MAJOR, {standby: true})
    try {
      const result = await runCli(['check-connection', '--database-url', standby.adminUrl, '--json'])
      assert.equal(result.code, 0, result.stdout)
      const report = parseJson<Report>(result)
      assert.equal(report.ok, true)
      const recovery = step(report, 'recovery')
      assert.equal(recovery.status, 'warn')
      assert.equal(recovery.ok, true)
      assert.match(recovery.detail, /standby \(pg_is_in_recovery\(\) is true\)/)
      assert.match(recovery.hint!, /migrate refuses a standby/)
      assert.deepEqual(report.steps.filter((s) => s.status !== 'pass').map((s) => s.name), ['recovery'])

      const human = await runCli(['check-connection', '--database-url', standby.adminUrl])
      assert.equal(human.code, 0)
      assert.match(human.stdout, /^! primary or standby /m)
      assert.match(human.stdout, /^All required checks passed, 1 warning \(primary or standby\)\.$/m)
    } finally {
      await standby.stop()
    }
  })

  it('pool sizing against a small max_connections: pass, warn above 80 %, fail above 100 %', async () => {
    // max_connections 20 - 3 superuser_reserved_connections = 17 usable slots; the pool is 7 by default.
    const small = await startServer(FIRST_MAJOR, {settings: {max_connections: '20'}})
    try {
      const sizing = async (workers: number) => {
        const result = await runCli(['check-connection', '--database-url', small.adminUrl, '--workers', String(workers), '--json'])
        return {result, step: step(parseJson<Report>(result), 'pool-sizing')}
      }
      const one = await sizing(1)
      assert.equal(one.result.code, 0)
      assert.equal(one.step.status, 'pass')
      assert.match(one.step.detail, /^1 worker × pool 7 \+ 1 = 8 of 17 usable connections \(max_connections 20 − 3 superuser_reserved_connections\): 47 %/)

      const two = await sizing(2)
      assert.equal(two.result.code, 0, 'a warning does not fail the check')
      assert.equal(two.step.status, 'warn')
      assert.match(two.step.detail, /= 15 of 17 usable connections .*: 88 %/)
      assert.match(two.step.hint!, /max_connections/)

      const three = await sizing(3)
      assert.equal(three.result.code, 1)
      assert.equal(three.step.status, 'fail')
      assert.match(three.step.detail, /3 workers × pool 7 \+ 1 = 22 of 17 usable connections .*: 129 %/)
      assert.equal(step(parseJson<Report>(three.result), 'settings').status, 'pass', 'steps that do not need it still run')

      // A smaller pool fits again.
      const smaller = await runCli(['check-connection', '--database-url', small.adminUrl, '--workers', '3', '--max-connections', '4', '--json'])
      assert.equal(smaller.code, 0)
      assert.match(step(parseJson<Report>(smaller), 'pool-sizing').detail, /= 13 of 17/)
    } finally {
      await small.stop()
    }
  })

  it('--wait retries until a server that starts a few seconds later answers', async () => {
    const port = await freePort()
    const child = spawnCli(['check-connection', '--wait', '30', '--database-url', `postgres://postgres@127.0.0.1:${port}/postgres`, '--json'])
    const done = collect(child)
    let server: TestServer | undefined
    try {
      await sleep(3000)
      server = await startServer(FIRST_MAJOR, {port})
      const result = await done
      assert.equal(result.code, 0, result.stderr)
      assert.equal(parseJson<Report>(result).ok, true)
      assert.match(result.stderr, /^Attempt 1 failed at TCP connect: connection refused by 127\.0\.0\.1:\d+: nothing listens there; retrying in 250 ms/m)
      assert.ok(result.stderr.trim().split('\n').length >= 2, `several attempts:\n${result.stderr}`)
    } finally {
      child.kill()
      await server?.stop()
    }
  })

  it('--wait gives up when the time is up, with the last report and exit 1', async () => {
    const port = await freePort()
    const started = Date.now()
    const result = await runCli(['check-connection', '--wait', '2', '--database-url', `postgres://someone@127.0.0.1:${port}/db`])
    const elapsed = Date.now() - started
    assert.equal(result.code, 1)
    // Generous upper bound: a loaded machine is slow to start node, not slow to give up.
    assert.ok(elapsed >= 2000 && elapsed < 30_000, `took ${elapsed} ms`)
    const attempts = result.stderr.match(/^Attempt \d+ failed at TCP connect/gm) ?? []
    assert.ok(attempts.length >= 2, result.stderr)
    assert.match(result.stdout, /^Failed: TCP connect; 11 steps not run\.$/m)
    assert.match(result.stderr, /^Error: check-connection failed at TCP connect/m)
  })
})

describe('check-connection over TLS', () => {
  it('uses TLS when the server offers it, and blames TLS when the certificate cannot be verified', async () => {
    const server = await startServer(FIRST_MAJOR, {ssl: true})
    try {
      const required = await runCli(['check-connection', '--database-url', `${server.adminUrl}?sslmode=require`, '--json'])
      assert.equal(required.code, 0, required.stdout)
      const report = parseJson<Report>(required)
      assert.equal(step(report, 'tls').detail, 'the server offers TLS; this connection uses it (sslmode=require)')
      assert.match(step(report, 'authentication').detail, /logged in as postgres \(superuser\) over TLSv1\.[23]/)
      assert.match(step(report, 'settings').detail, /ssl=on/)

      // A self-signed certificate is not trusted by verify-full: the handshake, not the password, fails.
      const verified = await runCli(['check-connection', '--database-url', `${server.adminUrl}?sslmode=verify-full`, '--json'])
      const failed = assertFailsAt(verified, 'tls')
      assert.match(step(failed, 'tls').detail, /TLS negotiation .* failed/)
      assert.match(step(failed, 'tls').hint!, /ssl_root_cert/)
      assert.equal(step(failed, 'authentication').status, 'skipped')
      assertNotRunAfter(failed, 'tls')
    } finally {
      await server.stop()
    }
  })
})
