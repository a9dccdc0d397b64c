import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {
  STEPS,
  assessPoolSizing,
  assessServerVersion,
  assessTls,
  assessUuidOssp,
  blockingStep,
  classifyConnectError,
  configPlace,
  isReportOk,
  retryDelayMs,
  type SslAnswer,
  type StepName,
  type StepStatus,
  type UuidOsspFacts,
} from '../../src/lib/diagnose.js'
import type {SslMode} from '../../src/lib/config.js'

const FLAG = configPlace({source: 'flag', sourceDetail: '--database-url'})
const CONNECTION = {
  display: 'postgres://antiraid:***@db.internal:5432/antiraid',
  user: 'antiraid',
  database: 'antiraid',
  source: 'file' as const,
  sourceDetail: '/srv/tw/config.yaml (meta.postgres_url)',
}

/** Shaped like postgres.js's PostgresError (a server ErrorResponse). */
function postgresError(code: string, message: string): Error {
  const error = Object.assign(new Error(message), {code, severity: 'FATAL'})
  error.name = 'PostgresError'
  return error
}

function done(statuses: Partial<Record<StepName, StepStatus>>): Array<{name: StepName; status: StepStatus}> {
  return Object.entries(statuses).map(([name, status]) => ({name: name as StepName, status: status!}))
}

describe('step order and dependencies', () => {
  it('lists the steps of SPEC.md in order, each needing only earlier steps', () => {
    assert.deepEqual(STEPS.map((s) => s.name), [
      'config', 'dns', 'tcp', 'tls', 'authentication', 'database', 'server-version', 'types',
      'uuid-ossp', 'schema-privilege', 'recovery', 'pooler', 'pool-sizing', 'settings',
    ])
    STEPS.forEach((step, index) => {
      for (const need of step.needs) assert.ok(STEPS.findIndex((s) => s.name === need) < index, `${step.name} needs ${need}, which comes first`)
    })
  })

  it('lets a step run when what it needs passed or only warned', () => {
    assert.equal(blockingStep('config', []), undefined)
    assert.equal(blockingStep('tcp', done({config: 'pass', dns: 'pass'})), undefined)
    assert.equal(blockingStep('settings', done({database: 'pass', recovery: 'warn', 'pool-sizing': 'fail'})), undefined)
  })

  it('stops a step whose need failed, was not run, or is missing', () => {
    assert.equal(blockingStep('tcp', done({config: 'pass', dns: 'fail'})), 'dns')
    assert.equal(blockingStep('tls', done({dns: 'fail', tcp: 'skipped'})), 'tcp')
    assert.equal(blockingStep('authentication', []), 'tls')
  })

  it('is ok when nothing failed or was skipped; warnings do not fail', () => {
    assert.equal(isReportOk([{status: 'pass'}, {status: 'warn'}]), true)
    assert.equal(isReportOk([{status: 'pass'}, {status: 'fail'}]), false)
    assert.equal(isReportOk([{status: 'pass'}, {status: 'skipped'}]), false)
  })
})

describe('--wait backoff', () => {
  it('starts at 250 ms and doubles up to 2 s', () => {
    assert.deepEqual([1, 2, 3, 4, 5, 10].map(retryDelayMs), [250, 500, 1000, 2000, 2000, 2000])
  })
})

describe('pool sizing: workers x pool + 1 against max_connections minus the reserved slots', () => {
  const cases: Array<[string, Parameters<typeof assessPoolSizing>[0], {needed: number; available: number; status: string}]> = [
    ['well within', {workers: 1, poolSize: 7, maxConnections: 100, superuserReserved: 3, reserved: 0}, {needed: 8, available: 97, status: 'pass'}],
    ['exactly 80 % passes', {workers: 1, poolSize: 7, maxConnections: 13, superuserReserved: 3, reserved: 0}, {needed: 8, available: 10, status: 'pass'}],
    ['above 80 % warns', {workers: 2, poolSize: 7, maxConnections: 20, superuserReserved: 3, reserved: 0}, {needed: 15, available: 17, status: 'warn'}],
    ['exactly 100 % warns', {workers: 2, poolSize: 8, maxConnections: 20, superuserReserved: 3, reserved: 0}, {needed: 17, available: 17, status: 'warn'}],
    ['above 100 % fails', {workers: 3, poolSize: 7, maxConnections: 20, superuserReserved: 3, reserved: 0}, {needed: 22, available: 17, status: 'fail'}],
    ['reserved_connections (16+) counts too', {workers: 1, poolSize: 7, maxConnections: 20, superuserReserved: 3, reserved: 5}, {needed: 8, available: 12, status: 'pass'}],
    ['no usable slot fails', {workers: 1, poolSize: 1, maxConnections: 3, superuserReserved: 3, reserved: 0}, {needed: 2, available: 0, status: 'fail'}],
  ]
  for (const [what, input, expected] of cases) {
    it(what, () => {
      const sizing = assessPoolSizing(input)
      assert.deepEqual({needed: sizing.needed, available: sizing.available, status: sizing.status}, expected)
    })
  }
})

describe('TLS: what the SSLRequest answer means for the configured sslmode', () => {
  const S: SslAnswer = {kind: 'byte', byte: 0x53}
  const N: SslAnswer = {kind: 'byte', byte: 0x4e}
  const cases: Array<[SslMode, SslAnswer, 'pass' | 'fail', RegExp]> = [
    ['prefer', S, 'pass', /offers TLS; this connection uses it/],
    ['require', S, 'pass', /offers TLS; this connection uses it/],
    ['disable', S, 'pass', /offers TLS; not used \(sslmode=disable\)/],
    ['prefer', N, 'pass', /does not offer TLS; connecting unencrypted/],
    ['allow', N, 'pass', /does not offer TLS; connecting unencrypted/],
    ['disable', N, 'pass', /does not offer TLS; not used/],
    ['require', N, 'fail', /does not offer TLS, but sslmode=require demands it/],
    ['verify-ca', N, 'fail', /sslmode=verify-ca demands it/],
    ['verify-full', N, 'fail', /sslmode=verify-full demands it/],
    ['require', {kind: 'unix-socket'}, 'pass', /not used on a unix socket/],
    ['prefer', {kind: 'byte', byte: 0x48}, 'fail', /does not speak the PostgreSQL protocol \(it answered 0x48 'H'\)/],
    ['prefer', {kind: 'byte', byte: 0x00}, 'fail', /answered 0x00\)/],
    ['prefer', {kind: 'byte', byte: 0x45}, 'fail', /answered the SSL request with an error/],
    ['prefer', {kind: 'closed'}, 'fail', /closed the connection without answering/],
    ['prefer', {kind: 'timeout', seconds: 3}, 'fail', /did not answer the SSL request within 3 s/],
  ]
  for (const [mode, answer, status, detail] of cases) {
    const label = answer.kind === 'byte' ? `0x${answer.byte.toString(16)}` : answer.kind
    it(`sslmode=${mode}, answer ${label}: ${status}`, () => {
      const outcome = assessTls(mode, answer, FLAG)
      assert.equal(outcome.status, status)
      assert.match(outcome.detail, detail)
      if (status === 'fail') assert.ok(outcome.hint, 'a failure has a hint')
    })
  }

  it('points at the SSL mode setting when TLS is demanded but missing', () => {
    assert.match(assessTls('require', N, FLAG).hint!, /ssl = on .*prefer or disable \(database\.ssl, or \?sslmode= in --database-url\)/)
  })
})

describe('uuid-ossp: available, installed, creatable by this user', () => {
  const base: UuidOsspFacts = {
    availableVersion: '1.1',
    installedVersion: null,
    installedSchema: null,
    superuser: false,
    trusted: true,
    canCreateInDatabase: false,
    database: 'antiraid',
    user: 'antiraid',
  }
  it('passes when installed', () => {
    const outcome = assessUuidOssp({...base, installedVersion: '1.1', installedSchema: 'public'})
    assert.deepEqual(outcome, {status: 'pass', detail: 'installed (version 1.1, schema public)'})
  })
  it('fails when the server does not ship it', () => {
    const outcome = assessUuidOssp({...base, availableVersion: null})
    assert.equal(outcome.status, 'fail')
    assert.match(outcome.hint!, /contrib/)
  })
  it('passes when a superuser can create it', () => {
    assert.match(assessUuidOssp({...base, superuser: true, trusted: false}).detail, /migrate creates it \(antiraid is a superuser\)/)
  })
  it('passes when it is trusted (13+) and the user may CREATE in the database', () => {
    assert.match(assessUuidOssp({...base, canCreateInDatabase: true}).detail, /trusted extension/)
  })
  it('fails when trusted but the user lacks CREATE on the database, suggesting both fixes', () => {
    const outcome = assessUuidOssp(base)
    assert.equal(outcome.status, 'fail')
    assert.match(outcome.hint!, /CREATE EXTENSION "uuid-ossp"; in database antiraid, or GRANT CREATE ON DATABASE antiraid TO antiraid;/)
  })
  it('fails when only superusers may create it (PostgreSQL 12), even with CREATE on the database', () => {
    const outcome = assessUuidOssp({...base, trusted: false, canCreateInDatabase: true})
    assert.equal(outcome.status, 'fail')
    assert.match(outcome.detail, /only lets superusers create it/)
    assert.doesNotMatch(outcome.hint!, /GRANT/)
  })
})

describe('server version', () => {
  it('accepts 12 and later', () => {
    assert.equal(assessServerVersion('12.0', 120000).status, 'pass')
    assert.equal(assessServerVersion('18.4', 180004).detail, 'PostgreSQL 18.4 (180004)')
  })
  it('refuses 11 with an upgrade hint', () => {
    const outcome = assessServerVersion('11.22', 110022)
    assert.equal(outcome.status, 'fail')
    assert.match(outcome.detail, /too old: 12 or later is required/)
    assert.match(outcome.hint!, /Upgrade/)
  })
})

describe('where a connect error belongs, and the hint for it', () => {
  it('a wrong password is authentication, with the password and pg_hba.conf hint naming the config file', () => {
    const failure = classifyConnectError(postgresError('28P01', 'password authentication failed for user "antiraid"'), CONNECTION)
    assert.equal(failure.step, 'authentication')
    assert.equal(failure.detail, 'password authentication failed for user "antiraid" (SQLSTATE 28P01)')
    assert.match(failure.hint, /user and password in \/srv\/tw\/config\.yaml \(meta\.postgres_url\)/)
    assert.match(failure.hint, /pg_hba\.conf/)
  })
  it('no pg_hba.conf entry is authentication, with the pg_hba.conf fix', () => {
    const failure = classifyConnectError(postgresError('28000', 'no pg_hba.conf entry for host "10.0.0.9", user "antiraid", database "antiraid", no encryption'), CONNECTION)
    assert.equal(failure.step, 'authentication')
    assert.match(failure.hint, /pg_reload_conf/)
  })
  it("a scram server signature mismatch is authentication", () => {
    assert.equal(classifyConnectError(Object.assign(new Error('The server did not return the correct signature'), {code: 'SASL_SIGNATURE_MISMATCH'}), CONNECTION).step, 'authentication')
  })
  it('a missing database is the database step, with CREATE DATABASE', () => {
    const failure = classifyConnectError(postgresError('3D000', 'database "antiraid" does not exist'), CONNECTION)
    assert.equal(failure.step, 'database')
    assert.match(failure.hint, /CREATE DATABASE antiraid OWNER antiraid;/)
  })
  it('quotes a database name that needs it', () => {
    const failure = classifyConnectError(postgresError('3D000', 'database "Tw-DB" does not exist'), {...CONNECTION, database: 'Tw-DB'})
    assert.match(failure.hint, /CREATE DATABASE "Tw-DB" OWNER antiraid;/)
  })
  it('a TLS handshake failure belongs to the TLS step', () => {
    const failure = classifyConnectError(Object.assign(new Error('self-signed certificate'), {code: 'DEPTH_ZERO_SELF_SIGNED_CERT'}), CONNECTION)
    assert.equal(failure.step, 'tls')
    assert.match(failure.detail, /TLS negotiation with postgres:\/\/antiraid:\*\*\*@db\.internal:5432\/antiraid failed/)
  })
  it('a server still starting up suggests --wait', () => {
    const failure = classifyConnectError(postgresError('57P03', 'the database system is starting up'), CONNECTION)
    assert.equal(failure.step, 'authentication')
    assert.match(failure.hint, /--wait/)
  })
  it('too many connections names the connection slots', () => {
    const failure = classifyConnectError(postgresError('53300', 'sorry, too many clients already'), CONNECTION)
    assert.match(failure.hint, /max_connections/)
  })
})

describe('configPlace: where hints send the user', () => {
  it('names the flag, the variable, the file and key, or the libpq variables', () => {
    assert.equal(configPlace({source: 'flag', sourceDetail: '--database-url'}).text, '--database-url')
    assert.equal(configPlace({source: 'env', sourceDetail: 'DATABASE_URL'}).text, 'DATABASE_URL')
    assert.equal(configPlace({source: 'file', sourceDetail: '/srv/tw/config.yaml (meta.postgres_url)'}).text, '/srv/tw/config.yaml (meta.postgres_url)')
    assert.match(configPlace({source: 'libpq', sourceDetail: 'PGHOST/PGDATABASE environment'}).text, /PGHOST/)
  })
})
