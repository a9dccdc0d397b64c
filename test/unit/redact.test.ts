import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {formatConnection, redact, registerSecret} from '../../src/lib/redact.js'

// registerSecret() is process-wide: every test below uses its own secret so
// that one test's registration cannot make another pass by accident.

describe('redact: passwords inside URLs', () => {
  it('hides the password of a plain postgres URL and keeps everything else', () => {
    assert.equal(redact('postgres://antiraid:hunter2@localhost:5432/antiraid'), 'postgres://antiraid:***@localhost:5432/antiraid')
  })

  it('hides the password of a postgresql:// URL inside a sentence, query string kept', () => {
    assert.equal(
      redact('could not connect to postgresql://admin:Tr0ub4dor@db.example.com:6543/app?sslmode=require (refused)'),
      'could not connect to postgresql://admin:***@db.example.com:6543/app?sslmode=require (refused)',
    )
  })

  it('hides an unencoded password holding "@", ":" and "%" whole', () => {
    const out = redact('postgres://u:p@ss:w%rd@host:5432/db')
    assert.equal(out, 'postgres://u:***@host:5432/db')
    assert.ok(!out.includes('w%rd'))
  })

  it('hides a percent-encoded password', () => {
    assert.equal(redact('postgres://u:p%40ss%3Aw%25rd@host/db'), 'postgres://u:***@host/db')
  })

  it('hides a password holding a slash, percent-encoded or once registered', () => {
    assert.equal(redact('postgres://u:pass%2Fword@host/db'), 'postgres://u:***@host/db')
    assert.equal(redact('postgres://u:pass/word@host/db'), 'postgres://u:***@host/db')
    registerSecret('slash/pw-42')
    assert.equal(redact('postgres://u:slash/pw-42@host/db'), 'postgres://u:***@host/db')
  })

  it('hides the password of every URL in the text', () => {
    assert.equal(
      redact('from postgres://a:one1@h1/db1 to postgres://b:two2@h2:5433/db2'),
      'from postgres://a:***@h1/db1 to postgres://b:***@h2:5433/db2',
    )
  })

  it('hides the password of a URL whose host is an IPv6 literal', () => {
    assert.equal(redact('postgres://u:v6secret@[::1]:5432/db'), 'postgres://u:***@[::1]:5432/db')
  })

  it('hides an empty-host (unix socket) URL password', () => {
    assert.equal(
      redact('postgres://u:sockpw@/db?host=/var/run/postgresql'),
      'postgres://u:***@/db?host=/var/run/postgresql',
    )
  })

  it('leaves a URL without a password unchanged', () => {
    const text = 'postgres://antiraid@localhost:5432/antiraid'
    assert.equal(redact(text), text)
  })

  it('leaves a URL without user info unchanged, even with a port and an "@" in its query', () => {
    const text = 'postgres://localhost:5432/db?application_name=a@b'
    assert.equal(redact(text), text)
  })

  it('leaves text without any URL unchanged', () => {
    const text = 'relation "tenant_kv" does not exist: user:name@example'
    assert.equal(redact(text), text)
  })
})

describe('redact: registered secrets', () => {
  it('hides a registered password wherever it appears in free text', () => {
    registerSecret('correct-horse-battery')
    assert.equal(
      redact('password authentication failed: correct-horse-battery (twice: correct-horse-battery)'),
      'password authentication failed: *** (twice: ***)',
    )
  })

  it('hides the percent-encoded form of a registered password', () => {
    registerSecret('s3cr3t@wörk')
    const encoded = encodeURIComponent('s3cr3t@wörk')
    assert.equal(redact(`PGPASSWORD=${encoded}`), 'PGPASSWORD=***')
  })

  it('hides a registered password containing another registered password as a whole', () => {
    registerSecret('abcdef')
    registerSecret('xxabcdefyy')
    assert.equal(redact('token xxabcdefyy'), 'token ***')
  })

  it('ignores an undefined or empty secret', () => {
    registerSecret(undefined)
    registerSecret('')
    assert.equal(redact('nothing to hide here'), 'nothing to hide here')
  })

  it('does not touch text that holds no registered secret', () => {
    registerSecret('zebra-quartz-91')
    assert.equal(redact('zebra quartz 91'), 'zebra quartz 91')
  })
})

describe('formatConnection', () => {
  it('shows a connection with a password as postgres://user:***@host:port/db', () => {
    const shown = formatConnection({host: 'db.internal', port: 5432, user: 'antiraid', database: 'antiraid', password: 'hunter2'})
    assert.equal(shown, 'postgres://antiraid:***@db.internal:5432/antiraid')
  })

  it('shows a connection without a password with no ":***"', () => {
    assert.equal(formatConnection({host: 'localhost', port: 6543, user: 'tw', database: 'app'}), 'postgres://tw@localhost:6543/app')
  })

  it('never includes the password itself', () => {
    const shown = formatConnection({host: 'h', port: 5432, user: 'u', database: 'd', password: 'p@ss:w%rd'})
    assert.ok(!shown.includes('p@ss'))
    assert.ok(!shown.includes('w%rd'))
  })

  it('puts an IPv6 host in brackets', () => {
    assert.equal(formatConnection({host: '::1', port: 5432, user: 'u', database: 'd', password: 'x'}), 'postgres://u:***@[::1]:5432/d')
  })

  it('shows a unix socket connection with the socket directory in ?host=', () => {
    const shown = formatConnection({
      host: '/var/run/postgresql',
      socketPath: '/var/run/postgresql',
      port: 5433,
      user: 'postgres',
      database: 'antiraid',
    })
    assert.equal(shown, 'postgres://postgres@/antiraid?host=/var/run/postgresql&port=5433')
  })

  it('percent-encodes a user and database name that need it', () => {
    assert.equal(
      formatConnection({host: 'h', port: 5432, user: 'me@corp', database: 'my db', password: 'x'}),
      'postgres://me%40corp:***@h:5432/my%20db',
    )
  })
})
