import assert from 'node:assert/strict'
import {chmodSync, readFileSync, readdirSync, writeFileSync} from 'node:fs'
import path from 'node:path'
import {describe, it} from 'node:test'

import {PG_DUMP, PG_DUMP_MAJOR, runToFile, seededDatabase} from '../support/backup.js'
import {collect, runCli, spawnCli, waitUntil} from '../support/cli.js'
import {PASSWORD, testMajors, useServers, type TestDatabase} from '../support/postgres.js'
import {twDbWaitsForALock} from '../support/schema.js'
import {temporaryDirectory} from '../support/temp.js'

// Servers newer than pg_dump refuse every backup before it starts (backup-restore.test.ts covers that).
const majors = testMajors().filter((major) => major <= PG_DUMP_MAJOR)
const servers = useServers(majors)

/** A pg_bin_dir whose pg_dump records its argv and whether it got PGPASSWORD, then runs the real one. */
function recordingPgDump(behaviour = 'exec "$REAL" "$@"'): {dir: string; log: string} {
  const dir = temporaryDirectory()
  const log = path.join(dir, 'calls.log')
  const script = `#!/bin/sh\nREAL=${JSON.stringify(PG_DUMP)}\n[ "$1" = --version ] && exec "$REAL" --version\nprintf 'argv:%s\\n' "$*" >> ${JSON.stringify(log)}\n[ -n "$PGPASSWORD" ] && echo env:PGPASSWORD=set >> ${JSON.stringify(log)}\n${behaviour}\n`
  writeFileSync(path.join(dir, 'pg_dump'), script)
  chmodSync(path.join(dir, 'pg_dump'), 0o755)
  return {dir, log}
}

/** The pg_dump processes dumping for `pid` (its children, read from /proc as pgrep -P does; not those asked their version). */
function pgDumpChildren(pid: number): number[] {
  const children: number[] = []
  for (const entry of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      // "pid (comm) state ppid …": comm may hold spaces and parentheses, so split after the last ')'.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const [, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (Number(ppid) !== pid || readFileSync(`/proc/${entry}/comm`, 'utf8').trim() !== 'pg_dump') continue
      if (!readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').includes('--version')) children.push(Number(entry))
    } catch {
      // the process ended while we read it
    }
  }
  return children
}

/** Whether `pid` still runs (a zombie waiting for its parent to reap it does not). */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return false
  }
}

/**
 * Starts `tw-db backup -o output` while another session holds tenant_kv in
 * ACCESS EXCLUSIVE mode, and returns once its pg_dump waits for that lock.
 * pg_dump takes ACCESS SHARE on every table it dumps, so it stays blocked until `release()`.
 */
async function blockedBackup(db: TestDatabase, output: string) {
  const holder = await db.sql.reserve()
  await holder`begin`
  await holder`lock table tenant_kv in access exclusive mode`
  const child = spawnCli(['backup', '--database-url', db.url, '-o', output])
  const result = collect(child)
  await waitUntil(async () => (await db.sql`select 1 from pg_stat_activity where datname = ${db.name} and wait_event_type = 'Lock'`).length === 1)
  const pgDump = pgDumpChildren(child.pid!)
  assert.equal(pgDump.length, 1, 'tw-db runs one pg_dump')
  return {
    child,
    result,
    pgDump: pgDump[0],
    release: async () => {
      await holder`rollback`.catch(() => undefined)
      holder.release()
    },
  }
}

function configWith(url: string, pgBinDir: string): string {
  const file = path.join(temporaryDirectory(), 'tw-db.config.yaml')
  writeFileSync(file, `database:\n  url: ${url}\ntools:\n  pg_bin_dir: ${pgBinDir}\n`, {mode: 0o600})
  return file
}

for (const major of majors) {
  describe(`backup when pg_dump fails or tw-db is stopped, on PostgreSQL ${major}`, () => {
    it('leaves no file when pg_dump fails, and reports what pg_dump said', async () => {
      const source = await seededDatabase(servers.get(major)!)
      const dir = temporaryDirectory()
      const result = await runCli(['backup', '--database-url', source.url, '-t', 'no_such_table', '-o', path.join(dir, 'out.sql')])
      assert.equal(result.code, 1)
      assert.match(result.stderr, /Error: backup failed: pg_dump \d+\.\d+ exited with status 1: pg_dump: error: no matching tables were found/)
      assert.deepEqual(readdirSync(dir), [])
    })

    it('refuses -o naming an existing directory (exit 2, nothing written), and takes -o - as stdout', async () => {
      const source = await seededDatabase(servers.get(major)!)
      const dir = temporaryDirectory()
      const refused = await runCli(['backup', '--database-url', source.url, '-o', dir])
      assert.equal(refused.code, 2)
      assert.match(refused.stderr, /^Error: .* is a directory$/m)
      assert.deepEqual(readdirSync(dir), [])
      assert.deepEqual(readdirSync(path.dirname(dir)).filter((name) => name.startsWith(`.${path.basename(dir)}.`)), [])
      const file = path.join(dir, 'dump.sql')
      assert.equal((await runToFile(['backup', '--database-url', source.url, '-o', '-'], file)).code, 0)
      assert.match(readFileSync(file, 'utf8'), /-- PostgreSQL database dump complete/)
      assert.deepEqual(readdirSync(dir), ['dump.sql'])
    })

    it('leaves no file when pg_dump is killed half-way', async () => {
      const source = await seededDatabase(servers.get(major)!)
      const dir = temporaryDirectory()
      const fake = recordingPgDump('"$REAL" "$@" | head -c 2000\nkill -KILL $$')
      const result = await runCli(['backup', '--config', configWith(source.url, fake.dir), '-o', path.join(dir, 'out.sql')])
      assert.equal(result.code, 1)
      assert.match(result.stderr, /pg_dump \d+\.\d+ was killed by SIGKILL/)
      assert.deepEqual(readdirSync(dir), [])
    })

    it('leaves only its temporary file when killed with SIGKILL, and the next backup removes it', async () => {
      const source = await seededDatabase(servers.get(major)!)
      const dir = temporaryDirectory()
      const output = path.join(dir, 'out.sql')
      const backup = await blockedBackup(source, output)
      try {
        backup.child.kill('SIGKILL')
        assert.equal((await backup.result).signal, 'SIGKILL')
        // Nothing kills the orphaned pg_dump: it would still write the partial once the lock is released.
        assert.ok(running(backup.pgDump), 'pg_dump outlives a tw-db killed with SIGKILL')
      } finally {
        if (running(backup.pgDump)) process.kill(backup.pgDump, 'SIGKILL')
        await backup.release()
      }
      const stale = `.out.sql.tw-db-${backup.child.pid}.partial`
      assert.deepEqual(readdirSync(dir), [stale], 'no file at FILE, only the temporary one')

      // A partial of a process that still runs (this test) is not stale; neither is another target's.
      const live = `.out.sql.tw-db-${process.pid}.partial`
      const otherTarget = `.other.sql.tw-db-${backup.child.pid}.partial`
      writeFileSync(path.join(dir, live), '')
      writeFileSync(path.join(dir, otherTarget), '')
      const again = await runCli(['backup', '--database-url', source.url, '-o', output])
      assert.equal(again.code, 0, again.stderr)
      assert.equal(again.stderr.match(/^Removed a partial backup left by a tw-db process that no longer runs: (.*)$/m)?.[1], path.join(dir, stale))
      assert.deepEqual(readdirSync(dir).sort(), [live, otherTarget, 'out.sql'].sort())
      assert.match(readFileSync(output, 'utf8'), /-- PostgreSQL database dump complete/)
    })

    it('stops pg_dump and removes its temporary file when tw-db gets SIGTERM', async () => {
      const source = await seededDatabase(servers.get(major)!)
      const dir = temporaryDirectory()
      const backup = await blockedBackup(source, path.join(dir, 'out.sql'))
      let pgDumpLeft = true
      try {
        backup.child.kill('SIGTERM')
        const result = await backup.result
        pgDumpLeft = running(backup.pgDump)
        assert.equal(result.code, 1, result.stderr)
        assert.match(result.stderr, /Error: backup interrupted: pg_dump was stopped/)
      } finally {
        if (running(backup.pgDump)) process.kill(backup.pgDump, 'SIGKILL')
        await backup.release()
      }
      assert.equal(pgDumpLeft, false, 'tw-db stopped its pg_dump before exiting')
      assert.deepEqual(readdirSync(dir), [])
    })

    it('stops on SIGINT that comes while it reads the ledger: exit 1, no file', async () => {
      const source = await seededDatabase(servers.get(major)!)
      const dir = temporaryDirectory()
      // Holding the ledger locked keeps tw-db waiting for its read (and its pg_dump, if started, for that table).
      const holder = await source.sql.reserve()
      try {
        await holder`begin`
        await holder`lock table _migrations_applied in access exclusive mode`
        const child = spawnCli(['backup', '--database-url', source.url, '-o', path.join(dir, 'out.sql')])
        const run = collect(child)
        await waitUntil(() => twDbWaitsForALock(source.sql))
        child.kill('SIGINT')
        await holder`commit`
        const result = await run
        assert.equal(result.code, 1, result.stderr)
        assert.match(result.stderr, /Error: backup interrupted/)
        assert.doesNotMatch(result.stderr, /Backup complete/)
      } finally {
        holder.release()
      }
      assert.deepEqual(readdirSync(dir), [])
    })

    it('hands pg_dump the password through its environment, never its argv', async () => {
      const source = await seededDatabase(servers.get(major)!)
      await source.sql`grant select on all tables in schema public to tw_secret_user`
      const fake = recordingPgDump()
      const dir = temporaryDirectory()
      const result = await runCli(['backup', '--config', configWith(source.passwordUrl, fake.dir), '-F', 'custom', '-o', path.join(dir, 'out.dump')])
      assert.equal(result.code, 0, result.stderr)
      const log = readFileSync(fake.log, 'utf8')
      assert.match(log, /argv:--format custom --no-password/)
      assert.match(log, /env:PGPASSWORD=set/)
      assert.ok(!log.includes(PASSWORD) && !log.includes(encodeURIComponent(PASSWORD)), log)
      assert.ok(!result.stderr.includes(PASSWORD))
    })
  })
}
