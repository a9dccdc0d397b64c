/**
 * Migration 1 (`khronosvalue_v2`) on N legacy rows of nested KhronosValue v1
 * values, against the row-by-row method of the Rust original and a plain
 * `UPDATE … SET value = value` as the floor, on a server of its own with
 * PostgreSQL's default durability. The rows are generated once into a
 * template database; every run works on a fresh copy of it.
 */
import {randomUUID} from 'node:crypto'
import {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import postgres from 'postgres'

import {startServer, type TestServer} from '../test/support/postgres.js'
import {seededRandom} from '../test/support/random.js'
import {createLegacyTable} from '../test/support/schema.js'
import {
  BIN,
  NODE,
  PG_CLIENT_MAJOR,
  cleanEnv,
  createDatabase,
  dropDatabase,
  formatMs,
  formatRate,
  measure,
  medianMs,
  peakRssKb,
  pgTool,
  progress,
  queryOne,
  ratioRow,
  RSS_TARGET,
  rssRow,
  timeProcess,
  timed,
  timeRow,
  withDatabase,
  type Context,
  type Row,
  type Run,
  type Scale,
} from './lib.js'

const SECTION = 'khronos v1 -> v2'
const TAG = '___khronosValType___'

// ---------------------------------------------------------------- v1 values

const KEYS = ['count', 'enabled', 'name', 'last_seen', 'roles', 'channel', 'settings', 'limits', 'score', 'tags', 'owner', 'expires', 'history', 'prefix', 'x', 'y', '1', '42']
const WORDS = ['hello', 'antiraid', 'mod-log', 'welcome to the server', 'héllo ✓', 'ban', 'kick', '', 'line one\nline two', 'tab\tseparated', 'quote " and \\ backslash']
const ZONES = ['UTC', 'Europe/Paris', 'America/New_York', 'Asia/Kolkata']

export function legacyValue(next: () => number): unknown {
  const pick = <T>(items: readonly T[]) => items[Math.floor(next() * items.length)]
  // A float with a fractional part: 1.0 would be read back by JSON.parse as the integer 1.
  const float = () => Math.round((next() * 2000 - 1000) * 1000) / 1000 + 0.0005
  const leaf = (): unknown => {
    const roll = next()
    if (roll < 0.2) return Math.floor(next() * 1_000_000) - (next() < 0.2 ? 2_000_000 : 0)
    if (roll < 0.3) return next() < 0.1 ? Math.floor(next() * 2 ** 52) : float()
    if (roll < 0.5) return pick(WORDS)
    if (roll < 0.62) return next() < 0.5
    if (roll < 0.68) return null
    if (roll < 0.74) return {[TAG]: 'timestamptz', value: new Date(1_600_000_000_000 + Math.floor(next() * 2e11)).toISOString()}
    if (roll < 0.8) return {[TAG]: 'interval', value: {secs: Math.floor(next() * 86_400), nanos: Math.floor(next() * 1e9)}}
    if (roll < 0.86) return {[TAG]: 'vector', value: [float(), float(), float()]}
    if (roll < 0.9) return {[TAG]: 'timezone', value: pick(ZONES)}
    return next() < 0.5 ? [] : {}
  }
  // A container `depth` levels deep: its first child carries the depth, the others are mostly leaves.
  const node = (depth: number): unknown => {
    if (depth === 0) return leaf()
    const size = 1 + Math.floor(next() * 5)
    const children = Array.from({length: size}, (_, i) => node(i === 0 || next() < 0.25 ? depth - 1 : 0))
    if (next() < 0.4) return children
    return Object.fromEntries(children.map((child, i) => [i === 0 ? pick(KEYS) : `${pick(KEYS)}_${i}`, child]))
  }
  // A fifth of the values are plain scalars or tagged values; the rest nest 1 to 4 levels.
  return next() < 0.2 ? leaf() : node(1 + Math.floor(next() * 4))
}

/** COPY text format: a backslash is an escape, so it is doubled (JSON text holds no raw tab or newline). */
function copyLine(id: string, guildId: string, key: string, value: unknown, scopes: string): string {
  return `${id}\t${guildId}\t${key}\t${JSON.stringify(value).replace(/\\/g, '\\\\')}\t${scopes}\n`
}

async function fillLegacyTable(url: string, rows: number): Promise<void> {
  const sql = postgres(url, {max: 1, onnotice: () => undefined})
  try {
    await createLegacyTable(sql)
    const next = seededRandom(20_240_501)
    function* lines(): Generator<string> {
      for (let start = 0; start < rows; start += 1000) {
        let batch = ''
        for (let i = start; i < Math.min(rows, start + 1000); i++) {
          const guild = String(100_000_000_000_000_000n + BigInt(Math.floor(next() * 5000)))
          const scopes = next() < 0.8 ? '{}' : '{guild,dm}'
          batch += copyLine(randomUUID(), guild, `template:${i}`, legacyValue(next), scopes)
        }
        yield batch
      }
    }
    const copy = await sql`copy guild_templates_kv (id, guild_id, key, value, scopes) from stdin`.writable()
    await pipeline(Readable.from(lines()), copy)
    // Every copy starts frozen, with statistics, and with no hint bits left to set on first read.
    await sql`vacuum (freeze, analyze) guild_templates_kv`
  } finally {
    await sql.end()
  }
}

// ---------------------------------------------------------------- the row-by-row method

/** v1 -> v2 in JavaScript, by SPEC.md section 4; map keys in jsonb's order (shorter first, then bytewise). */
export function toV2(value: unknown): unknown {
  if (value === null) return {Null: null}
  if (typeof value === 'boolean') return {Boolean: value}
  if (typeof value === 'string') return {Text: value}
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || Math.abs(value) >= 2 ** 64) return {Float: value}
    if (Math.abs(value) >= 2 ** 53) throw new Error(`integer ${value} is outside the safe range`)
    return {Integer: value}
  }
  if (Array.isArray(value)) return {List: value.map(toV2)}
  const object = value as Record<string, unknown>
  switch (object[TAG]) {
    case 'vector':
      return {Vector: object.value}
    case 'timestamptz':
      return {Timestamptz: object.value}
    case 'interval':
      return {Interval: object.value}
    case 'timezone':
      return {TimeZone: object.value}
    case 'buffer':
      throw new Error('buffer values are not supported in v2')
  }
  const keys = Object.keys(object).sort((a, b) => Buffer.byteLength(a) - Buffer.byteLength(b) || Buffer.compare(Buffer.from(a), Buffer.from(b)))
  return {Map: keys.map((key) => [{Text: key}, toV2(object[key])])}
}

/**
 * The Rust original (`khronosvalue_v2.rs` in the Template Worker): read the
 * rows, convert each in the application, then one `UPDATE … WHERE id = $2`
 * per row, each executed on the pool, so each commits on its own. Rows are
 * read 1,000 at a time (by id) rather than all at once, so that a million
 * values fit in memory; the UPDATE round trips dominate either way.
 * `oneTransaction` wraps the whole run in one transaction instead: the same
 * method without a commit per row, reported beside it.
 */
async function convertRowByRow(url: string, {oneTransaction}: {oneTransaction: boolean}): Promise<void> {
  const sql = postgres(url, {max: 1, onnotice: () => undefined})
  const convertAll = async (db: postgres.Sql | postgres.TransactionSql) => {
    let last = ''
    for (;;) {
      const rows = await db<Array<{id: string; value: unknown}>>`
        select id, value from guild_templates_kv where id > ${last} order by id limit 1000`
      if (rows.length === 0) break
      for (const row of rows) await db`update guild_templates_kv set value = ${db.json(toV2(row.value) as postgres.JSONValue)} where id = ${row.id}`
      last = rows.at(-1)!.id
    }
  }
  try {
    await (oneTransaction ? sql.begin(convertAll) : convertAll(sql))
  } finally {
    await sql.end()
  }
}

// ---------------------------------------------------------------- the section

/** A cheap summary of every value, to check that two methods converted alike. */
async function fingerprint(url: string): Promise<string> {
  const {n, hash} = await queryOne<{n: string; hash: string}>(
    url,
    'select count(*)::text as n, coalesce(sum(hashtext(value::text)::bigint), 0)::text as hash from guild_templates_kv',
  )
  return `${n}:${hash}`
}

/** A run on a fresh copy of the template; the first converted copy of each method is fingerprinted. */
function onCopy(server: TestServer, template: string, fingerprints: Map<string, string> | undefined, label: string, work: (url: string) => Promise<Run>) {
  return () =>
    withDatabase(
      server,
      async (db) => {
        const run = await work(db.url)
        if (fingerprints && !fingerprints.has(label)) fingerprints.set(label, await fingerprint(db.url))
        return run
      },
      template,
    )
}

/**
 * PostgreSQL's defaults, which the harness turns off for speed. The Rust
 * original commits once per row, and a commit that is not flushed to disk
 * costs almost nothing: on a server that does not flush, the method would be
 * measured without its main cost in production.
 */
const DURABLE = {fsync: 'on', synchronous_commit: 'on', full_page_writes: 'on'}

export async function khronos({scale}: Context): Promise<Row[]> {
  const server = await startServer(PG_CLIENT_MAJOR, {settings: DURABLE})
  try {
    return await convertOn(server, scale)
  } finally {
    await server.stop()
  }
}

async function convertOn(server: TestServer, scale: Scale): Promise<Row[]> {
  const rows = scale.khronosRows
  const template = await createDatabase(server)
  progress(`[${SECTION}] generating ${rows.toLocaleString('en')} legacy rows`)
  const filled = await timed(() => fillLegacyTable(template.url, rows))
  const {size, bytes} = await queryOne<{size: string; bytes: number}>(
    template.url,
    'select pg_size_pretty(pg_database_size(current_database())) as size, avg(length(value::text))::int as bytes from guild_templates_kv',
  )
  progress(`[${SECTION}] template ready in ${formatMs(filled.ms)}: ${size}, values of ${bytes} characters of JSON on average`)

  const env = cleanEnv()
  const fingerprints = new Map<string, string>()
  const [floor, rowByRow, rowByRowInOne, twDb] = await measure(
    SECTION,
    [
      {
        label: "psql -c 'UPDATE … SET value = value'",
        run: onCopy(server, template.name, undefined, 'floor', (url) =>
          timeProcess(pgTool('psql'), ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', 'UPDATE guild_templates_kv SET value = value'], {env}),
        ),
      },
      {
        label: 'row by row (postgres.js, one UPDATE per row, each commits)',
        run: onCopy(server, template.name, fingerprints, 'row by row', (url) => timed(() => convertRowByRow(url, {oneTransaction: false}), true)),
      },
      {
        label: 'row by row in one transaction',
        run: onCopy(server, template.name, fingerprints, 'row by row in one transaction', (url) =>
          timed(() => convertRowByRow(url, {oneTransaction: true}), true),
        ),
      },
      {
        label: 'tw-db migrate --target khronosvalue_v2',
        memory: true,
        run: (watchRss) =>
          onCopy(server, template.name, fingerprints, 'tw-db', (url) =>
            timeProcess(NODE, [BIN, 'migrate', '--target', 'khronosvalue_v2', '--database-url', url], {env, watchRss}),
          )(),
      },
    ],
    scale.runs.khronos,
  )
  if (new Set(fingerprints.values()).size !== 1) {
    throw new Error(`tw-db and the row-by-row methods converted differently: ${JSON.stringify(Object.fromEntries(fingerprints))}`)
  }
  await dropDatabase(server, template.name)

  const rate = (series: typeof twDb) => ` (${formatRate(rows, medianMs(series))})`
  return [
    timeRow(SECTION, floor, rate(floor)),
    timeRow(SECTION, rowByRow, rate(rowByRow)),
    timeRow(SECTION, rowByRowInOne, rate(rowByRowInOne)),
    ratioRow(SECTION, twDb, rowByRow, {op: '<=', limit: 0.25, unit: 'x', text: '<= 0.25x (>= 4x rows/s)'}, rate(twDb)),
    ratioRow(SECTION, twDb, rowByRowInOne, undefined, rate(twDb)),
    ratioRow(SECTION, twDb, floor, undefined, rate(twDb)),
    rssRow(SECTION, 'tw-db migrate peak RSS', peakRssKb(twDb), RSS_TARGET),
  ]
}
