/**
 * The embedded database as a process: one tw-db per data directory, and
 * Ctrl-C leaving it clean (SPEC.md section 7).
 */
import assert from 'node:assert/strict'
import {existsSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {after, describe, it} from 'node:test'

import {FIXTURES, collect, parseJson, runCli, spawnCli, waitUntil} from '../support/cli.js'
import {noClientTools, queryEmbedded} from '../support/embedded.js'

const cwd = mkdtempSync(path.join(tmpdir(), 'tw-db-embedded-'))
after(() => rmSync(cwd, {recursive: true, force: true}))

function freshDir(name: string): string {
  return path.join(cwd, name)
}

describe('embedded database (PGlite) processes', () => {
  it('keeps a second process out of a data directory in use, and takes over a lock left by a dead one', async () => {
    const dataDir = freshDir('locked')
    const url = `pglite:${dataDir}`
    const first = spawnCli(['migrate', '--migrations-dir', path.join(FIXTURES, 'slow'), '--database-url', url], {cwd, env: noClientTools})
    const firstDone = collect(first)
    await waitUntil(async () => existsSync(`${dataDir}.lock`), 600_000)
    const second = await runCli(['status', '--database-url', url], {cwd, env: noClientTools})
    assert.equal(second.code, 1)
    assert.match(second.stderr, new RegExp(`^Error: the embedded database ${dataDir} is in use by another tw-db process \\(pid ${first.pid}\\)`, 'm'))
    assert.equal((await firstDone).code, 0)
    assert.equal(existsSync(`${dataDir}.lock`), false)

    writeFileSync(`${dataDir}.lock`, '999999999\n') // no such process
    const takeover = await runCli(['status', '--json', '--migrations-dir', path.join(FIXTURES, 'slow'), '--database-url', url], {cwd, env: noClientTools})
    assert.equal(takeover.code, 0, takeover.stderr)
    assert.deepEqual(parseJson(takeover).summary, {applied: 3, pending: 0, modified: 0, unknown: 0})
  })

  it('lets only one of two processes that find the same stale lock at once take it over', async () => {
    const dataDir = freshDir('stale-race')
    const url = `pglite:${dataDir}`
    assert.equal((await runCli(['status', '--database-url', url], {cwd, env: noClientTools})).code, 0)
    writeFileSync(`${dataDir}.lock`, '999999999\n') // no such process
    // The first process reads the stale pid, then stalls (this preload): the second takes the lock over meanwhile.
    const stall = path.join(cwd, 'stall-lock-read.cjs')
    writeFileSync(
      stall,
      "const fs = require('node:fs'); const read = fs.readFileSync; let stalled = false\n" +
        "fs.readFileSync = function (file, ...rest) { const text = read.call(this, file, ...rest)\n" +
        "  if (!stalled && String(file).endsWith('.lock')) { stalled = true; Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1500) }\n" +
        '  return text }\n',
    )
    const args = ['migrate', '--migrations-dir', path.join(FIXTURES, 'slow'), '--database-url', url]
    const first = collect(spawnCli(args, {cwd, env: {...noClientTools, NODE_OPTIONS: `--require ${stall}`}}))
    await new Promise((resolve) => setTimeout(resolve, 500))
    const second = collect(spawnCli(args, {cwd, env: noClientTools}))
    const results = await Promise.all([first, second])
    const codes = results.map((result) => result.code).sort()
    assert.deepEqual(codes, [0, 1], results.map((result) => result.stderr).join('\n---\n'))
    assert.match(results.find((result) => result.code === 1)!.stderr, /is in use by another tw-db process/)
    assert.equal(existsSync(`${dataDir}.lock`), false)
    assert.equal(existsSync(`${dataDir}.lock.takeover`), false)
  })

  it('Ctrl-C during migrate rolls back the running migration, releases the data directory, and a re-run finishes', async () => {
    const dataDir = freshDir('interrupted')
    const url = `pglite:${dataDir}`
    const migrationsDir = path.join(FIXTURES, 'slow')
    const child = spawnCli(['migrate', '--migrations-dir', migrationsDir, '--database-url', url], {cwd, env: noClientTools})
    let progress = ''
    child.stdout!.on('data', (chunk) => (progress += chunk))
    const done = collect(child)
    // first is applied; slow (an 8 s pg_sleep) is running when the signal comes.
    let exited = false
    void done.then(() => (exited = true))
    // A first start creates the database (initdb in WebAssembly): slow on a busy machine.
    await waitUntil(async () => {
      assert.equal(exited, false, `migrate ended before the signal: ${progress}`)
      return progress.includes('✔ first')
    }, 900_000)
    child.kill('SIGINT')
    const result = await done
    assert.equal(result.code, 1, result.stderr)
    assert.match(result.stderr, /^Error: interrupted before or while applying slow/m)
    assert.equal(existsSync(`${dataDir}.lock`), false)
    // The embedded database cannot cancel a running statement: slow ran to its end, then rolled back, ledger row included.
    const tables = await queryEmbedded<{tablename: string}>(dataDir, `select tablename from pg_tables where schemaname = 'public' order by 1`)
    const ledger = await queryEmbedded<{id: string}>(dataDir, 'select id from _migrations_applied order by id')
    assert.deepEqual(tables.map((t) => t.tablename), ['_migrations_applied', 'first_marker'])
    assert.deepEqual(ledger.map((r) => r.id), ['first'])

    const rerun = await runCli(['migrate', '--migrations-dir', migrationsDir, '--database-url', url], {cwd, env: noClientTools})
    assert.equal(rerun.code, 0, rerun.stderr)
    assert.match(rerun.stdout, /✔ last/)
  })

  it('Ctrl-C during a command without its own handling closes the database cleanly', async () => {
    const dataDir = freshDir('locked')
    const child = spawnCli(['status', '--migrations-dir', path.join(FIXTURES, 'slow'), '--database-url', `pglite:${dataDir}`], {cwd, env: noClientTools})
    const done = collect(child)
    await waitUntil(async () => existsSync(`${dataDir}.lock`), 600_000)
    child.kill('SIGINT')
    const result = await done
    assert.ok(result.code === 130 || result.code === 0, `exit ${result.code} ${result.signal}: ${result.stderr}`)
    assert.equal(existsSync(`${dataDir}.lock`), false)
    const again = await runCli(['status', '--json', '--migrations-dir', path.join(FIXTURES, 'slow'), '--database-url', `pglite:${dataDir}`], {cwd, env: noClientTools})
    assert.equal(again.code, 0, again.stderr)
    assert.deepEqual(parseJson(again).summary, {applied: 3, pending: 0, modified: 0, unknown: 0})
  })

  it('a Ctrl-C the moment the lock file appears still closes cleanly: the signal guard comes first', async () => {
    // Before the fix, 8 of 15 such runs (under load) died of the signal and left the lock behind.
    for (let run = 0; run < 4; run++) {
      const dataDir = freshDir(`race-${run}`)
      const child = spawnCli(['status', '--database-url', `pglite:${dataDir}`], {cwd, env: noClientTools})
      const done = collect(child)
      while (!existsSync(`${dataDir}.lock`) && child.exitCode === null) await new Promise((resolve) => setImmediate(resolve))
      child.kill('SIGINT')
      const result = await done
      assert.equal(result.signal, null, `run ${run} died of ${result.signal}`)
      assert.ok(result.code === 130 || result.code === 0, `run ${run}: exit ${result.code}: ${result.stderr}`)
      assert.equal(existsSync(`${dataDir}.lock`), false, `run ${run} left its lock file`)
    }
  })
})
