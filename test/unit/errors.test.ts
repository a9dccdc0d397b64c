import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {EXIT, TwDbError, configError, fromPgError, isPgError, usageError} from '../../src/lib/errors.js'
import {registerSecret} from '../../src/lib/redact.js'

const TARGET = 'postgres://antiraid:***@db.internal:5432/antiraid'

/** An error shaped like the ones Node's net/dns modules and postgres.js raise for sockets. */
function socketError(code: string, message: string, extra: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(message), {code, errno: code, ...extra})
}

/** An error shaped like postgres.js's PostgresError (a server ErrorResponse). */
function postgresError(code: string, message: string, extra: Record<string, unknown> = {}): Error {
  const error = Object.assign(new Error(message), {code, severity: 'FATAL', ...extra})
  error.name = 'PostgresError'
  return error
}

function mapped(input: unknown): TwDbError {
  const result = fromPgError(input, TARGET)
  assert.ok(result instanceof TwDbError, `expected a TwDbError, got ${String(result)}`)
  return result
}

describe('fromPgError: reaching the server', () => {
  const cases: Array<[string, Error, string]> = [
    ['connection refused', socketError('ECONNREFUSED', 'connect ECONNREFUSED 10.0.0.5:5432', {syscall: 'connect', address: '10.0.0.5', port: 5432}), 'E_UNREACHABLE'],
    ['a missing unix socket', socketError('ENOENT', 'connect ENOENT /var/run/postgresql/.s.PGSQL.5432', {syscall: 'connect'}), 'E_UNREACHABLE'],
    ['an unreachable host', socketError('EHOSTUNREACH', 'connect EHOSTUNREACH 10.0.0.5:5432'), 'E_UNREACHABLE'],
    ['an unknown host name', socketError('ENOTFOUND', 'getaddrinfo ENOTFOUND db.internal', {hostname: 'db.internal', syscall: 'getaddrinfo'}), 'E_DNS'],
    ['a temporary DNS failure', socketError('EAI_AGAIN', 'getaddrinfo EAI_AGAIN db.internal', {hostname: 'db.internal'}), 'E_DNS'],
    ["postgres.js's connect timeout", socketError('CONNECT_TIMEOUT', 'write CONNECT_TIMEOUT db.internal:5432'), 'E_TIMEOUT'],
    ['a TCP timeout', socketError('ETIMEDOUT', 'connect ETIMEDOUT 10.0.0.5:5432'), 'E_TIMEOUT'],
    ['a reset connection', socketError('ECONNRESET', 'read ECONNRESET'), 'E_CONNECTION_LOST'],
    ["postgres.js's closed connection", socketError('CONNECTION_CLOSED', 'write CONNECTION_CLOSED db.internal:5432'), 'E_CONNECTION_LOST'],
  ]
  for (const [what, input, code] of cases) {
    it(`maps ${what} (${String((input as Error & {code?: string}).code)}) to ${code}, exit 1, with a hint`, () => {
      const error = mapped(input)
      assert.equal(error.code, code)
      assert.equal(error.exit, 1)
      assert.ok(error.hint && error.hint.trim().length > 0)
      assert.ok(error.message.includes(TARGET), error.message)
      assert.equal(error.cause, input)
    })
  }

  it('names the host name it could not resolve', () => {
    const error = mapped(socketError('ENOTFOUND', 'getaddrinfo ENOTFOUND db.internal', {hostname: 'db.internal'}))
    assert.equal(error.message, `cannot resolve host name db.internal of ${TARGET}`)
  })

  it('reads well without a host name', () => {
    const error = mapped(socketError('ENOTFOUND', 'getaddrinfo ENOTFOUND'))
    assert.equal(error.message, `cannot resolve host name of ${TARGET}`)
  })

  it('maps a TLS failure of the socket to E_SSL', () => {
    const error = mapped(new Error('self-signed certificate in certificate chain'))
    assert.equal(error.code, 'E_SSL')
    assert.equal(error.exit, 1)
    assert.ok(error.hint?.includes('ssl'))
  })
})

describe('fromPgError: server errors', () => {
  const cases: Array<[string, string, string]> = [
    ['28P01', 'password authentication failed for user "antiraid"', 'E_AUTH'],
    ['28000', 'no pg_hba.conf entry for host "10.0.0.9", user "antiraid"', 'E_AUTH'],
    ['3D000', 'database "antiraid" does not exist', 'E_DATABASE_MISSING'],
    ['53300', 'sorry, too many clients already', 'E_TOO_MANY_CONNECTIONS'],
    ['57P01', 'terminating connection due to administrator command', 'E_CONNECTION_LOST'],
    ['57P03', 'the database system is starting up', 'E_UNREACHABLE'],
  ]
  for (const [sqlstate, message, code] of cases) {
    it(`maps SQLSTATE ${sqlstate} to ${code}, exit 1, keeping PostgreSQL's message and a hint`, () => {
      const input = postgresError(sqlstate, message)
      const error = mapped(input)
      assert.equal(error.code, code)
      assert.equal(error.exit, 1)
      assert.ok(error.message.includes(message), error.message)
      assert.ok(error.message.includes(TARGET), error.message)
      assert.ok(error.hint && error.hint.trim().length > 0)
      assert.equal(error.cause, input)
    })
  }

  it('returns an unrelated server error unchanged', () => {
    const input = postgresError('42P01', 'relation "tenant_kv" does not exist')
    assert.equal(fromPgError(input, TARGET), input)
  })

  it('does not take a server error mentioning SSL for a TLS failure', () => {
    const input = postgresError('42883', 'function ssl_is_used() does not exist')
    assert.equal(fromPgError(input, TARGET), input)
  })
})

describe('fromPgError: leaves other errors alone', () => {
  it('returns an unrelated Error unchanged', () => {
    const input = new TypeError('cannot read properties of undefined')
    assert.equal(fromPgError(input, TARGET), input)
  })

  it('returns a non-Error value unchanged', () => {
    assert.equal(fromPgError('boom', TARGET), 'boom')
    assert.equal(fromPgError(undefined, TARGET), undefined)
  })

  it('returns a TwDbError unchanged', () => {
    const input = new TwDbError('E_CHECKSUM', 'changed')
    assert.equal(fromPgError(input, TARGET), input)
  })

  it('returns an ENOENT that is not about connecting unchanged', () => {
    const input = socketError('ENOENT', "open '/nope'", {syscall: 'open'})
    assert.equal(fromPgError(input, TARGET), input)
  })
})

describe('TwDbError never carries a password', () => {
  it('hides a registered password that appears in the server message', () => {
    registerSecret('Sup3r-Secret!pw')
    const error = mapped(postgresError('28P01', 'password authentication failed: got Sup3r-Secret!pw'))
    assert.equal(error.code, 'E_AUTH')
    assert.ok(!error.message.includes('Sup3r-Secret!pw'), error.message)
    assert.ok(error.message.includes('***'), error.message)
  })

  it('hides a password inside a URL given as the target', () => {
    const error = fromPgError(socketError('ECONNREFUSED', 'connect ECONNREFUSED'), 'postgres://u:raw-target-pw@h:5432/db')
    assert.ok(error instanceof TwDbError)
    assert.equal(error.message, 'connection refused by postgres://u:***@h:5432/db')
  })

  it('hides a registered password in the message and hint of any TwDbError', () => {
    registerSecret('another-pw-771')
    const error = new TwDbError('E_CONFIG', 'bad value another-pw-771', {hint: 'try another-pw-771'})
    assert.equal(error.message, 'bad value ***')
    assert.equal(error.hint, 'try ***')
  })
})

describe('TwDbError helpers', () => {
  it('gives configuration errors E_CONFIG and exit 2', () => {
    const error = configError('bad key', 'fix it')
    assert.equal(error.code, 'E_CONFIG')
    assert.equal(error.exit, EXIT.USAGE)
    assert.equal(error.exit, 2)
    assert.equal(error.hint, 'fix it')
  })

  it('gives usage errors E_USAGE and exit 2', () => {
    const error = usageError('bad flag')
    assert.equal(error.code, 'E_USAGE')
    assert.equal(error.exit, 2)
    assert.equal(error.hint, undefined)
  })

  it('defaults to exit 1', () => {
    assert.equal(new TwDbError('E_MIGRATION_FAILED', 'x').exit, 1)
  })

  it('recognises a PostgresError by its name only', () => {
    assert.equal(isPgError(postgresError('42P01', 'x')), true)
    assert.equal(isPgError(Object.assign(new Error('x'), {code: '42P01'})), false)
    assert.equal(isPgError({name: 'PostgresError', code: '42P01'}), false)
  })
})
