import assert from 'node:assert/strict'
import {readFileSync} from 'node:fs'
import path from 'node:path'
import {describe, it} from 'node:test'

import {FIXTURES, runCli} from '../support/cli.js'
import {testMajors, useServers} from '../support/postgres.js'
import {seededRandom} from '../support/random.js'
import {createLegacyTable, ledgerRows, tableExists} from '../support/schema.js'

const servers = useServers()

/** [row id, v1 JSON, expected v2 JSON] for every rule of the conversion table. */
const CASES: Array<[string, string, string]> = [
  ['null', 'null', '{"Null": null}'],
  ['true', 'true', '{"Boolean": true}'],
  ['false', 'false', '{"Boolean": false}'],
  ['zero', '0', '{"Integer": 0}'],
  ['int', '42', '{"Integer": 42}'],
  ['negative-int', '-7', '{"Integer": -7}'],
  ['max-safe', '9007199254740991', '{"Integer": 9007199254740991}'],
  ['min-safe', '-9007199254740991', '{"Integer": -9007199254740991}'],
  ['float', '2.5', '{"Float": 2.5}'],
  ['float-with-zero-fraction', '1.0', '{"Float": 1.0}'],
  ['exponent-integer', '1e3', '{"Integer": 1000}'],
  ['two-to-the-64', '18446744073709551616', '{"Float": 18446744073709551616}'],
  ['huge', '1e30', '{"Float": 1000000000000000000000000000000}'],
  ['text', '"hello"', '{"Text": "hello"}'],
  ['text-unicode', '"héllo ✓ \\"quoted\\""', '{"Text": "héllo ✓ \\"quoted\\""}'],
  ['empty-list', '[]', '{"List": []}'],
  ['empty-map', '{}', '{"Map": []}'],
  ['vector', '{"___khronosValType___": "vector", "value": [1, 2.5, -3]}', '{"Vector": [1, 2.5, -3]}'],
  ['timestamptz', '{"___khronosValType___": "timestamptz", "value": "2024-05-01T12:00:00Z"}', '{"Timestamptz": "2024-05-01T12:00:00Z"}'],
  ['interval', '{"___khronosValType___": "interval", "value": {"secs": 5, "nanos": 0}}', '{"Interval": {"secs": 5, "nanos": 0}}'],
  ['timezone', '{"___khronosValType___": "timezone", "value": "Europe/Paris"}', '{"TimeZone": "Europe/Paris"}'],
  ['tagged-without-value', '[1, {"___khronosValType___": "timezone"}]', '{"List": [{"Integer": 1}, {"TimeZone": null}]}'],
  ['unknown-tag-is-a-map', '{"___khronosValType___": "other", "value": 1}', '{"Map": [[{"Text": "value"}, {"Integer": 1}], [{"Text": "___khronosValType___"}, {"Text": "other"}]]}'],
  ['map-in-jsonb-key-order', '{"bb": 1, "a": true}', '{"Map": [[{"Text": "a"}, {"Boolean": true}], [{"Text": "bb"}, {"Integer": 1}]]}'],
  [
    'spec-example',
    '{"a": [1, 2.5, "x"], "t": {"___khronosValType___": "timezone", "value": "UTC"}}',
    '{"Map": [[{"Text": "a"}, {"List": [{"Integer": 1}, {"Float": 2.5}, {"Text": "x"}]}], [{"Text": "t"}, {"TimeZone": "UTC"}]]}',
  ],
  [
    'deeply-nested',
    '[[{"k": [null, {"___khronosValType___": "vector", "value": [0, 0, 1]}]}]]',
    '{"List": [{"List": [{"Map": [[{"Text": "k"}, {"List": [{"Null": null}, {"Vector": [0, 0, 1]}]}]]}]}]}',
  ],
  [
    // Containers deeper than the five levels the UPDATE converts inline go through the recursive function.
    'deeper-than-inline',
    '[[[[[[{"k": [1.5, {"___khronosValType___": "timezone", "value": "UTC"}, [], {}]}]]]]]]',
    '{"List": [{"List": [{"List": [{"List": [{"List": [{"List": [{"Map": [[{"Text": "k"}, {"List": [{"Float": 1.5}, {"TimeZone": "UTC"}, {"List": []}, {"Map": []}]}]]}]}]}]}]}]}]}',
  ],
]

/** The first released conversion (a recursive plpgsql function), the reference for random values. */
const FIRST_VERSION = readFileSync(path.join(FIXTURES, 'khronos-first-version.sql'), 'utf8')

/**
 * Random v1 values, nested up to 9 deep, made to hit the odd corners: keys
 * with quotes, backslashes, newlines and unicode; number lexemes that jsonb
 * keeps (-0, 0.0, 1.50, 1e-7); unknown and non-string tags; tagged values
 * with no "value" or with extra keys. Seeded: the same values on every run.
 */
function randomV1Values(count: number, seed: number): string[] {
  const next = seededRandom(seed)
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]
  const keys = ['', 'a', 'a"b', 'back\\slash', 'new\nline', 'ключ ✓', 'value', '___khronosValType___', '1']
  const numbers = ['0', '-0', '0.0', '1e-7', '1.50', '-2.5e3', '9007199254740991', '-9007199254740991', '18446744073709551616', '1e30', '42']
  const tags: unknown[] = ['vector', 'timestamptz', 'interval', 'timezone', 'other', 5, null]
  const value = (depth: number): string => {
    const roll = next()
    const children = () => Array.from({length: Math.floor(next() * 4)}, () => value(depth - 1))
    if (depth > 0 && roll < 0.25) return `[${children().join(', ')}]`
    if (depth > 0 && roll < 0.5) return `{${children().map((child) => `${JSON.stringify(pick(keys))}: ${child}`).join(', ')}}`
    if (roll < 0.6) {
      const members = [`"___khronosValType___": ${JSON.stringify(pick(tags))}`]
      if (next() < 0.8) members.push(`"value": ${value(Math.min(depth, 2))}`)
      if (next() < 0.2) members.push('"extra": 1')
      return `{${members.join(', ')}}`
    }
    if (roll < 0.75) return pick(numbers)
    if (roll < 0.85) return JSON.stringify(`${pick(keys)}${pick(['', ' é', ' "q"', ' \\'])}`)
    if (roll < 0.92) return pick(['true', 'false'])
    return 'null'
  }
  return Array.from({length: count}, () => value(1 + Math.floor(next() * 9)))
}

for (const major of testMajors()) {
  describe(`KhronosValue v1 -> v2 on PostgreSQL ${major}`, () => {
    it('converts a legacy database value by value exactly as the table says, touching no other column', async () => {
      const db = await servers.get(major)!.createDatabase()
      await createLegacyTable(db.sql)
      for (const [id, v1] of CASES) {
        await db.sql`
          insert into guild_templates_kv (id, guild_id, key, value, last_updated_at, expires_at)
          values (${id}, 'g', ${id}, ${v1}::text::jsonb, '2020-01-02 03:04:05+00', '2030-01-01 00:00:00+00')`
      }
      const before = await db.sql`select id, last_updated_at, created_at, scopes from guild_templates_kv order by id`

      const result = await runCli(['migrate', '--database-url', db.url])
      assert.equal(result.code, 0, result.stderr)

      const rows = await db.sql<Array<{id: string; value: unknown; text: string}>>`select id, value, value::text as text from tenant_kv`
      const byId = new Map(rows.map((r) => [r.id, r]))
      for (const [id, , v2] of CASES) {
        const [{equal, expected}] = await db.sql`
          select value = ${v2}::text::jsonb as equal, ${v2}::text::jsonb::text as expected from tenant_kv where id = ${id}`
        assert.ok(equal, `row ${id}: got ${byId.get(id)?.text}, expected ${expected}`)
        // Byte for byte as jsonb text, not just equal as values.
        assert.equal(byId.get(id)?.text, expected, `row ${id}`)
      }
      const after = await db.sql`select id, last_updated_at, created_at, scopes from tenant_kv order by id`
      assert.deepEqual(after, before)
      const [{owners}] = await db.sql`select count(*)::int as owners from tenant_kv where owner_id = 'g' and owner_type = 'guild'`
      assert.equal(owners, CASES.length)
    })

    it('converts 2,000 random values exactly as the first released version of the migration did', async () => {
      const db = await servers.get(major)!.createDatabase()
      await createLegacyTable(db.sql)
      const values = randomV1Values(2000, major)
      await db.sql`
        insert into guild_templates_kv (id, guild_id, key, value)
        select 'r' || n, 'g', 'k' || n, v::jsonb from unnest(${values}::text[]) with ordinality as u(v, n)`
      const expected = await db.sql.begin(async (tx) => {
        await tx.unsafe(FIRST_VERSION)
        return tx<Array<{id: string; text: string}>>`select id, pg_temp.khronos_v1_to_v2(value, id)::text as text from guild_templates_kv order by id`
      })

      const result = await runCli(['migrate', '--database-url', db.url])
      assert.equal(result.code, 0, result.stderr)
      const converted = await db.sql<Array<{id: string; text: string}>>`select id, value::text as text from tenant_kv order by id`
      assert.equal(converted.length, values.length)
      for (const [index, row] of converted.entries()) assert.deepEqual(row, {...expected[index]}, `row ${row.id}`)
    })

    for (const [label, id, bad, reason] of [
      ['a buffer', 'row-with-buffer', '{"ok": 1, "blob": {"___khronosValType___": "buffer", "value": [1, 2]}}', /buffer values are not supported.*blob API/s],
      ['an integer beyond 2^53', 'row-with-big-int', '[1, 9007199254740993]', /integer 9007199254740993 is outside the safe range/],
      ['a negative integer beyond -2^53', 'row-with-negative-big-int', '{"n": -9007199254740992}', /integer -9007199254740992 is outside the safe range/],
      ['an integer beyond 2^53 nested deeper than the inline levels', 'row-with-deep-big-int', '[[[[[[[9007199254740993]]]]]]]', /integer 9007199254740993 is outside the safe range/],
      ['a buffer nested deeper than the inline levels', 'row-with-deep-buffer', '{"a": [[[[[{"___khronosValType___": "buffer", "value": []}]]]]]}', /buffer values are not supported.*blob API/s],
    ] as const) {
      it(`aborts on ${label}, names the row id, and changes nothing`, async () => {
        const db = await servers.get(major)!.createDatabase()
        await createLegacyTable(db.sql)
        await db.sql`insert into guild_templates_kv (id, guild_id, key, value) values ('fine', 'g', 'a', '"fine"'), (${id}, 'g', 'b', ${bad}::text::jsonb)`
        const before = await db.sql`select id, value::text from guild_templates_kv order by id`

        const result = await runCli(['migrate', '--database-url', db.url])
        assert.equal(result.code, 1)
        assert.match(result.stderr, /Error: migration khronosvalue_v2 failed/)
        assert.match(result.stderr, new RegExp(`row id ${id}`))
        assert.match(result.stderr, reason)

        assert.deepEqual(await db.sql`select id, value::text from guild_templates_kv order by id`, before)
        assert.equal(await tableExists(db.sql, 'tenant_kv'), false)
        assert.deepEqual(await ledgerRows(db.sql), [])
      })
    }
  })
}
