import assert from 'node:assert/strict'
import {execFileSync, spawn} from 'node:child_process'
import {chmodSync, closeSync, mkdtempSync, openSync, readFileSync, readdirSync, statSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {describe, it} from 'node:test'

import type postgres from 'postgres'

import {BIN, EMPTY_DIR, collect, parseJson, runCli, spawnCli, waitUntil} from '../support/cli.js'
import {PASSWORD, testMajors, useServers, type TestDatabase} from '../support/postgres.js'
import {ledgerRows, tableExists} from '../support/schema.js'

const servers = useServers()

const PG_DUMP = execFileSync('sh', ['-c', 'command -v pg_dump'], {encoding: 'utf8'}).trim()
const PG_DUMP_MAJOR = Number(/\(PostgreSQL\) (\d+)/.exec(execFileSync(PG_DUMP, ['--version'], {encoding: 'utf8'}))![1])

function tempDir(): string {
  return mkdtempSync(path.join(tmpdir(), 'tw-db-backup-'))
}

/** A migrated database holding Template Worker data of every shape. */
async function seededDatabase(major: number): Promise<TestDatabase> {
  const db = await servers.get(major)!.createDatabase()
  const migrate = await runCli(['migrate', '--database-url', db.url])
  assert.equal(migrate.code, 0, migrate.stderr)
  await db.sql`
    insert into tenant_kv (owner_id, owner_type, key, value, scopes)
    select 'guild-' || (g % 7), case when g % 3 = 0 then 'user' else 'guild' end, 'key-' || g,
           jsonb_build_object('Map', jsonb_build_array(jsonb_build_array(jsonb_build_object('Text', 'n'), jsonb_build_object('Integer', g)))),
           array['scope-' || (g % 2), 'ünïcødé ✓']
    from generate_series(1, 500) g`
  await db.sql`
    insert into tenant_state (owner_id, owner_type, events, banned, data)
    select 'guild-' || g, 'guild', array['MESSAGE', 'INTERACTION'], g % 5 = 0, jsonb_build_object('n', g, 'quote', 'it''s "fine"')
    from generate_series(1, 50) g`
  return db
}

/** A checksum of all Template Worker data, to compare databases after a round trip. */
async function dataChecksum(sql: postgres.Sql): Promise<string> {
  const [row] = await sql`
    select md5((select string_agg(t::text, '|' order by t.id) from tenant_kv t)) ||
           md5((select string_agg(s::text, '|' order by s.owner_id) from tenant_state s)) as checksum`
  return row.checksum
}

/** Runs the CLI with stdout going to a file (as `tw-db backup > FILE` would). */
function runToFile(args: string[], file: string): Promise<{code: number | null; stderr: string}> {
  const out = openSync(file, 'w')
  const child = spawn(process.execPath, [BIN, ...args], {cwd: EMPTY_DIR, env: {PATH: process.env.PATH, HOME: process.env.HOME, NO_COLOR: '1'}, stdio: ['ignore', out, 'pipe']})
  closeSync(out)
  let stderr = ''
  child.stderr!.on('data', (chunk) => (stderr += chunk))
  return new Promise((resolve) => child.once('close', (code) => resolve({code, stderr})))
}

/** Runs a command under a pseudo-terminal (util-linux script), typing `input`. */
function runInTerminal(command: string, input: string): Promise<{code: number | null; output: string}> {
  const child = spawn('script', ['-qec', command, '/dev/null'], {cwd: EMPTY_DIR, env: {PATH: process.env.PATH, HOME: process.env.HOME, NO_COLOR: '1', TERM: 'dumb'}})
  let output = ''
  child.stdout.on('data', (chunk) => (output += chunk))
  child.stdin.end(input)
  return new Promise((resolve) => child.once('close', (code) => resolve({code, output})))
}

/** A pg_bin_dir whose pg_dump records its argv and whether it got PGPASSWORD, then runs the real one. */
function recordingPgDump(behaviour = 'exec "$REAL" "$@"'): {dir: string; log: string} {
  const dir = tempDir()
  const log = path.join(dir, 'calls.log')
  const script = `#!/bin/sh\nREAL=${JSON.stringify(PG_DUMP)}\n[ "$1" = --version ] && exec "$REAL" --version\nprintf 'argv:%s\\n' "$*" >> ${JSON.stringify(log)}\n[ -n "$PGPASSWORD" ] && echo env:PGPASSWORD=set >> ${JSON.stringify(log)}\n${behaviour}\n`
  writeFileSync(path.join(dir, 'pg_dump'), script)
  chmodSync(path.join(dir, 'pg_dump'), 0o755)
  return {dir, log}
}

/** The pg_dump processes whose parent is `pid`, read from /proc as pgrep -P does. */
function pgDumpChildren(pid: number): number[] {
  const children: number[] = []
  for (const entry of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      // "pid (comm) state ppid …": comm may hold spaces and parentheses, so split after the last ')'.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const [, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (Number(ppid) === pid && readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === 'pg_dump') children.push(Number(entry))
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
  const file = path.join(tempDir(), 'tw-db.config.yaml')
  writeFileSync(file, `database:\n  url: ${url}\ntools:\n  pg_bin_dir: ${pgBinDir}\n`, {mode: 0o600})
  return file
}

for (const major of testMajors()) {
  if (major > PG_DUMP_MAJOR) {
    describe(`backup on PostgreSQL ${major}, newer than the installed pg_dump ${PG_DUMP_MAJOR}`, () => {
      it('fails with exit 1 naming the server version, every pg_dump found and the fix, leaving no file', async () => {
        const db = await seededDatabase(major)
        const dir = tempDir()
        const output = path.join(dir, 'backup.dump')
        const result = await runCli(['backup', '--database-url', db.url, '-F', 'custom', '-o', output])
        assert.equal(result.code, 1)
        assert.match(result.stderr, new RegExp(`^Error: no pg_dump can handle PostgreSQL ${major}\\.\\d+: it needs pg_dump ${major} or newer; found: .*pg_dump \\(${PG_DUMP_MAJOR}\\.\\d+\\)`, 'm'))
        assert.match(result.stderr, new RegExp(`Hint: Install the PostgreSQL ${major} client`))
        assert.deepEqual(readdirSync(dir), [])
        const json = parseJson(await runCli(['backup', '--database-url', db.url, '-o', output, '--json']))
        assert.equal(json.error.code, 'E_PG_TOOL')
      })
    })
    continue
  }

  describe(`backup and restore on PostgreSQL ${major}`, () => {
    it('round-trips plain SQL through a pipe: backup > file, restore < file', async () => {
      const source = await seededDatabase(major)
      const target = await servers.get(major)!.createDatabase()
      const file = path.join(tempDir(), 'dump.sql')
      const dumped = await runToFile(['backup', '--database-url', source.url], file)
      assert.equal(dumped.code, 0, dumped.stderr)
      assert.match(dumped.stderr, /Backup complete: plain format, streamed to stdout, .*last applied migration: drop_tenant_kv_expires_at/)
      assert.match(readFileSync(file, 'utf8'), /-- PostgreSQL database dump complete/)

      const restored = await runCli(['restore', '--database-url', target.url], {input: readFileSync(file, 'utf8')})
      assert.equal(restored.code, 0, restored.stderr)
      assert.match(restored.stderr, /Restored plain backup from standard input/)
      assert.match(restored.stdout, /5 applied, 0 pending/)
      assert.equal(await dataChecksum(target.sql), await dataChecksum(source.sql))
      assert.deepEqual((await ledgerRows(target.sql)).map((r) => r.id), (await ledgerRows(source.sql)).map((r) => r.id))
    })

    for (const [format, args, name, detected] of [
      ['custom', ['-F', 'custom'], 'tw.dump', 'custom'],
      ['directory', ['-F', 'directory'], 'tw.dir', 'directory'],
      ['tar', ['-F', 'tar'], 'tw.tar', 'tar'],
      ['gzip-compressed plain', ['-Z', '6'], 'tw.sql.gz', 'gzip'],
    ] as const) {
      it(`round-trips the ${format} format through --output, written with mode 0600`, async () => {
        const source = await seededDatabase(major)
        const target = await servers.get(major)!.createDatabase()
        const dir = tempDir()
        const output = path.join(dir, name)
        const dumped = await runCli(['backup', '--database-url', source.url, ...args, '-o', output, '--json'])
        assert.equal(dumped.code, 0, dumped.stderr)
        const json = parseJson(dumped)
        assert.equal(json.output, output)
        assert.equal(json.lastMigration, 'drop_tenant_kv_expires_at')
        assert.ok(json.bytes > 0)
        assert.deepEqual(readdirSync(dir), [name], 'no temporary file left beside the backup')
        if (format !== 'directory') assert.equal(statSync(output).mode & 0o777, 0o600)

        const restored = await runCli(['restore', output, '--database-url', target.url, '--json'])
        assert.equal(restored.code, 0, restored.stderr)
        const report = parseJson(restored)
        assert.equal(report.restore.format, detected)
        assert.deepEqual(report.status.summary, {applied: 5, pending: 0, modified: 0, unknown: 0})
        assert.equal(await dataChecksum(target.sql), await dataChecksum(source.sql))
      })
    }

    it('leaves no file when pg_dump fails, and reports what pg_dump said', async () => {
      const source = await seededDatabase(major)
      const dir = tempDir()
      const result = await runCli(['backup', '--database-url', source.url, '-t', 'no_such_table', '-o', path.join(dir, 'out.sql')])
      assert.equal(result.code, 1)
      assert.match(result.stderr, /Error: backup failed: pg_dump \d+\.\d+ exited with status 1: pg_dump: error: no matching tables were found/)
      assert.deepEqual(readdirSync(dir), [])
    })

    it('leaves no file when pg_dump is killed half-way', async () => {
      const source = await seededDatabase(major)
      const dir = tempDir()
      const fake = recordingPgDump('"$REAL" "$@" | head -c 2000\nkill -KILL $$')
      const result = await runCli(['backup', '--config', configWith(source.url, fake.dir), '-o', path.join(dir, 'out.sql')])
      assert.equal(result.code, 1)
      assert.match(result.stderr, /pg_dump \d+\.\d+ was killed by SIGKILL/)
      assert.deepEqual(readdirSync(dir), [])
    })

    it('leaves only its temporary file when killed with SIGKILL, and the next backup removes it', async () => {
      const source = await seededDatabase(major)
      const dir = tempDir()
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
      const source = await seededDatabase(major)
      const dir = tempDir()
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

    it('hands pg_dump the password through its environment, never its argv', async () => {
      const source = await seededDatabase(major)
      await source.sql`grant select on all tables in schema public to tw_secret_user`
      const fake = recordingPgDump()
      const dir = tempDir()
      const result = await runCli(['backup', '--config', configWith(source.passwordUrl, fake.dir), '-F', 'custom', '-o', path.join(dir, 'out.dump')])
      assert.equal(result.code, 0, result.stderr)
      const log = readFileSync(fake.log, 'utf8')
      assert.match(log, /argv:--format custom --no-password/)
      assert.match(log, /env:PGPASSWORD=set/)
      assert.ok(!log.includes(PASSWORD) && !log.includes(encodeURIComponent(PASSWORD)), log)
      assert.ok(!result.stderr.includes(PASSWORD))
    })

    it('restores all or nothing: an error in the middle leaves the target as it was, even with --clean', async () => {
      const source = await seededDatabase(major)
      const file = path.join(tempDir(), 'dump.sql')
      assert.equal((await runToFile(['backup', '--database-url', source.url], file)).code, 0)
      const broken = readFileSync(file, 'utf8').replace('COPY public.tenant_state', 'SELECT no_such_function();\nCOPY public.tenant_state')
      writeFileSync(file, broken)

      const empty = await servers.get(major)!.createDatabase()
      const intoEmpty = await runCli(['restore', file, '--database-url', empty.url])
      assert.equal(intoEmpty.code, 1)
      assert.match(intoEmpty.stderr, /Error: restore failed: psql .* exited with status 3: .*no_such_function/)
      assert.equal(await tableExists(empty.sql, 'tenant_kv'), false)

      const populated = await seededDatabase(major)
      const before = await dataChecksum(populated.sql)
      const clean = await runCli(['restore', file, '--clean', '--database-url', populated.url])
      assert.equal(clean.code, 1)
      assert.equal(await dataChecksum(populated.sql), before, '--clean must roll back together with the failed restore')
    })

    it('refuses a non-empty target without --clean (exit 2, nothing touched), and replaces it with --clean', async () => {
      const source = await seededDatabase(major)
      const file = path.join(tempDir(), 'dump.sql')
      assert.equal((await runToFile(['backup', '--database-url', source.url], file)).code, 0)
      const target = await servers.get(major)!.createDatabase()
      await target.sql`create table keep_me (id int)`
      await target.sql`insert into keep_me values (42)`

      const refused = await runCli(['restore', file, '--database-url', target.url])
      assert.equal(refused.code, 2)
      assert.match(refused.stderr, /the target database .* is not empty \(1 user tables/)
      assert.equal(await tableExists(target.sql, 'tenant_kv'), false)

      const clean = await runCli(['restore', file, '--clean', '--database-url', target.url])
      assert.equal(clean.code, 0, clean.stderr)
      assert.equal(await tableExists(target.sql, 'keep_me'), false)
      assert.equal(await dataChecksum(target.sql), await dataChecksum(source.sql))
    })

    it('refuses a truncated plain dump before touching anything, unless --force', async () => {
      const source = await seededDatabase(major)
      const file = path.join(tempDir(), 'dump.sql')
      assert.equal((await runToFile(['backup', '--database-url', source.url], file)).code, 0)
      const whole = readFileSync(file, 'utf8')
      writeFileSync(file, whole.slice(0, whole.indexOf('COPY public.tenant_kv')))
      const target = await servers.get(major)!.createDatabase()
      const result = await runCli(['restore', file, '--database-url', target.url])
      assert.equal(result.code, 1)
      assert.match(result.stderr, /is truncated: it lacks pg_dump's closing line/)
      assert.equal(await tableExists(target.sql, 'tenant_kv'), false)

      const forced = await runCli(['restore', file, '--force', '--database-url', target.url])
      assert.equal(forced.code, 0, forced.stderr)
      assert.equal(await tableExists(target.sql, 'tenant_kv'), true)
    })

    it('refuses to write a backup to a terminal (exit 2)', async () => {
      const source = await seededDatabase(major)
      const result = await runInTerminal(`${process.execPath} ${BIN} backup --database-url ${source.url}`, '')
      assert.equal(result.code, 2)
      assert.match(result.output, /Error: refusing to write a backup to a terminal/)
    })

    it('shows the bytes written while it runs when stderr is a terminal', async () => {
      const source = await seededDatabase(major)
      const output = path.join(tempDir(), 'tw.dump')
      const result = await runInTerminal(`${process.execPath} ${BIN} backup -F custom -o ${output} --database-url ${source.url}`, '')
      assert.equal(result.code, 0, result.output)
      assert.match(result.output, /Backing up: \d+(\.\d)? ?[kMG]?B written/)
      assert.match(result.output, /Backup complete: custom format, \d+\.\d kB in /)
    })
  })

  describe(`reset on PostgreSQL ${major}`, () => {
    it('refuses without a terminal unless --force, dropping nothing', async () => {
      const db = await seededDatabase(major)
      const result = await runCli(['reset', '--database-url', db.url])
      assert.equal(result.code, 2)
      assert.match(result.stderr, /reset needs --force when not run from a terminal; nothing was dropped/)
      assert.equal(await tableExists(db.sql, 'tenant_kv'), true)
    })

    it('asks for the database name on a terminal and drops nothing on a wrong answer', async () => {
      const db = await seededDatabase(major)
      const command = `${process.execPath} ${BIN} reset --database-url ${db.url}`
      const wrong = await runInTerminal(command, 'postgres\n')
      assert.equal(wrong.code, 2)
      assert.match(wrong.output, /Type the database name \(t_[0-9a-f]+\) to confirm/)
      assert.match(wrong.output, /does not match the database name; nothing was dropped/)
      assert.equal(await tableExists(db.sql, 'tenant_kv'), true)

      const right = await runInTerminal(command, `${db.name}\n`)
      assert.equal(right.code, 0, right.output)
      assert.equal(await tableExists(db.sql, 'tenant_kv'), false)
      assert.equal(await tableExists(db.sql, '_migrations_applied'), false)
    })

    it('--force --migrate empties the database, keeps public\'s owner and grants, and migrates again', async () => {
      const db = await seededDatabase(major)
      await db.sql`create schema extra`
      await db.sql`create table extra.t (id int)`
      await db.sql`grant usage on schema public to tw_secret_user`
      await db.sql`alter default privileges in schema public grant select on tables to tw_secret_user`
      const aclOf = async () => (await db.sql`
        select pg_get_userbyid(nspowner) as owner, nspacl::text as acl,
          (select array_agg(defaclacl::text) from pg_default_acl d where d.defaclnamespace = n.oid) as defaults
        from pg_namespace n where nspname = 'public'`)[0]
      const before = await aclOf()

      const result = await runCli(['reset', '--force', '--migrate', '--database-url', db.url])
      assert.equal(result.code, 0, result.stderr)
      assert.match(result.stderr, /Reset .*: dropped extra, public; public recreated/)
      assert.match(result.stdout, /Applied 5 migrations/)
      assert.deepEqual(await aclOf(), before)
      assert.equal(await tableExists(db.sql, 'extra.t'), false)
      const [{rows}] = await db.sql`select count(*)::int as rows from tenant_kv`
      assert.equal(rows, 0)
      assert.equal((await ledgerRows(db.sql)).length, 5)
    })

    it('takes a usable backup first with --backup, and refuses to reset when it fails', async () => {
      const db = await seededDatabase(major)
      const checksum = await dataChecksum(db.sql)
      const refused = await runCli(['reset', '--force', '--backup', '/nonexistent/dir/before.dump', '--database-url', db.url])
      assert.equal(refused.code, 1)
      assert.match(refused.stderr, /reset refused: the backup to \/nonexistent\/dir\/before\.dump failed/)
      assert.equal(await dataChecksum(db.sql), checksum)

      const file = path.join(tempDir(), 'before.dump')
      const reset = await runCli(['reset', '--force', '--backup', file, '--database-url', db.url])
      assert.equal(reset.code, 0, reset.stderr)
      assert.equal(await tableExists(db.sql, 'tenant_kv'), false)
      const restored = await runCli(['restore', file, '--database-url', db.url])
      assert.equal(restored.code, 0, restored.stderr)
      assert.equal(await dataChecksum(db.sql), checksum)
    })
  })
}
