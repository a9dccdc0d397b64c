import assert from 'node:assert/strict'
import {createServer, type Server, type Socket} from 'node:net'
import {describe, it} from 'node:test'

import {parseJson, runCli} from '../support/cli.js'
import {testMajors, useServers} from '../support/postgres.js'

const servers = useServers(testMajors().slice(0, 1))

/** A TCP listener on 127.0.0.1 that accepts and never answers, like a black-holed port. */
async function silentListener(): Promise<{server: Server; port: number; close: () => Promise<void>}> {
  const sockets: Socket[] = []
  const server = createServer((socket) => sockets.push(socket))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const {port} = server.address() as {port: number}
  return {
    server,
    port,
    close: () => {
      for (const socket of sockets) socket.destroy()
      return new Promise((resolve) => server.close(() => resolve()))
    },
  }
}

describe('connection failures give one clear line, a hint and exit 1', () => {
  it('nothing listening on the port', async () => {
    const result = await runCli(['migrate', '--database-url', 'postgres://someone@127.0.0.1:1/db', '--json'])
    assert.equal(result.code, 1)
    const {error} = parseJson(result)
    assert.equal(error.code, 'E_UNREACHABLE')
    assert.equal(error.message, 'connection refused by postgres://someone@127.0.0.1:1/db')
    assert.match(error.hint, /Is PostgreSQL running/)
  })

  it('an unknown host name', async () => {
    const result = await runCli(['status', '--database-url', 'postgres://someone@no-such-host.invalid:5432/db'])
    assert.equal(result.code, 1)
    assert.match(result.stderr, /^Error: cannot resolve host name no-such-host\.invalid of postgres:\/\/someone@no-such-host\.invalid:5432\/db$/m)
    assert.match(result.stderr, /^Hint: Check the host name/m)
  })

  it('a server that never answers, within connect_timeout', async () => {
    const listener = await silentListener()
    try {
      const result = await runCli(['status', '--database-url', `postgres://someone@127.0.0.1:${listener.port}/db?connect_timeout=1`, '--json'])
      assert.equal(result.code, 1)
      assert.equal(parseJson(result).error.code, 'E_TIMEOUT')
    } finally {
      await listener.close()
    }
  })

  it('sslmode=require against a server without TLS', async () => {
    const server = [...servers.values()][0]
    const result = await runCli(['status', '--database-url', `${server.adminUrl}?sslmode=require`])
    assert.equal(result.code, 1)
    assert.match(result.stderr, /^Error: TLS negotiation with postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres failed/m)
    assert.match(result.stderr, /ssl: prefer or disable/)
  })

  it('sslmode=prefer falls back to a plain connection', async () => {
    const server = [...servers.values()][0]
    const result = await runCli(['status', '--database-url', `${server.adminUrl}?sslmode=prefer`, '--json'])
    assert.equal(result.code, 0, result.stderr)
  })

  it('an invalid sslmode in the URL is a configuration error (exit 2)', async () => {
    const result = await runCli(['status', '--database-url', 'postgres://u@127.0.0.1/db?sslmode=sometimes'])
    assert.equal(result.code, 2)
    assert.match(result.stderr, /invalid sslmode "sometimes" in the URL/)
  })
})
