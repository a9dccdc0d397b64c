/** Helpers shared by the backup, restore and reset tests. */
import assert from 'node:assert/strict'
import {execFileSync, spawn} from 'node:child_process'
import {closeSync, openSync} from 'node:fs'

import type postgres from 'postgres'

import {BIN, EMPTY_DIR, cleanEnv, runCli} from './cli.js'
import type {TestDatabase, TestServer} from './postgres.js'

/** The pg_dump on PATH, which the backup tests run against servers it supports. */
export const PG_DUMP = execFileSync('sh', ['-c', 'command -v pg_dump'], {encoding: 'utf8'}).trim()
export const PG_DUMP_MAJOR = Number(/\(PostgreSQL\) (\d+)/.exec(execFileSync(PG_DUMP, ['--version'], {encoding: 'utf8'}))![1])

/** Per server, the migrated and seeded database every seededDatabase() copies. */
const seededTemplates = new Map<TestServer, Promise<string>>()

async function seedTemplate(server: TestServer): Promise<string> {
  const db = await server.createDatabase()
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
  // CREATE DATABASE … TEMPLATE needs the template to have no connections.
  await db.sql.end()
  return db.name
}

/**
 * A migrated database holding Template Worker data of every shape: a copy of
 * one seeded per server, so each test costs a file copy instead of a migrate run.
 */
export async function seededDatabase(server: TestServer): Promise<TestDatabase> {
  if (!seededTemplates.has(server)) seededTemplates.set(server, seedTemplate(server))
  return server.createDatabase(await seededTemplates.get(server)!)
}

/** A checksum of all Template Worker data, to compare databases after a round trip. */
export async function dataChecksum(sql: postgres.Sql): Promise<string> {
  const [row] = await sql`
    select md5((select string_agg(t::text, '|' order by t.id) from tenant_kv t)) ||
           md5((select string_agg(s::text, '|' order by s.owner_id) from tenant_state s)) as checksum`
  return row.checksum
}

/** Runs the CLI with stdout going to a file (as `tw-db backup > FILE` would). */
export function runToFile(args: string[], file: string, {env}: {env?: Record<string, string>} = {}): Promise<{code: number | null; stderr: string}> {
  const out = openSync(file, 'w')
  const child = spawn(process.execPath, [BIN, ...args], {cwd: EMPTY_DIR, env: cleanEnv(env), stdio: ['ignore', out, 'pipe']})
  closeSync(out)
  let stderr = ''
  child.stderr!.on('data', (chunk) => (stderr += chunk))
  return new Promise((resolve) => child.once('close', (code) => resolve({code, stderr})))
}

/** Runs a command under a pseudo-terminal (util-linux script), typing `input`. */
export function runInTerminal(command: string, input: string): Promise<{code: number | null; output: string}> {
  const child = spawn('script', ['-qec', command, '/dev/null'], {cwd: EMPTY_DIR, env: cleanEnv({TERM: 'dumb'})})
  let output = ''
  child.stdout.on('data', (chunk) => (output += chunk))
  child.stdin.end(input)
  return new Promise((resolve) => child.once('close', (code) => resolve({code, output})))
}
