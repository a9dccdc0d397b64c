import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {TransactionControlFilter, parseDumpScript} from '../../src/lib/dump-script.js'
import {seededRandom} from '../support/random.js'

/** What pg_dump writes around large objects, with COPY data and bodies that must pass untouched. */
const SCRIPT = [
  '--',
  '-- PostgreSQL database dump',
  '--',
  '\\restrict abc',
  "SET client_encoding = 'UTF8';",
  'CREATE TABLE public.t (id integer, note text);',
  "CREATE FUNCTION public.f() RETURNS void LANGUAGE plpgsql AS $$\nBEGIN\n  PERFORM 1;\nEND;\n$$;",
  "SELECT pg_catalog.lo_create('20919');",
  'COPY public.t (id, note) FROM stdin;',
  '1\tBEGIN;',
  '2\tCOMMIT;',
  '3\tünïcødé ✓ \\\\.',
  '\\.',
  'BEGIN;',
  '',
  "SELECT pg_catalog.lo_open('20919', 131072);",
  "SELECT pg_catalog.lowrite(0, '\\x68656c6c6f');",
  'SELECT pg_catalog.lo_close(0);',
  '',
  'COMMIT;',
  '',
  "COMMENT ON TABLE public.t IS 'begin; commit;';",
  'ALTER TABLE ONLY public.t',
  '    ADD CONSTRAINT t_pkey PRIMARY KEY (id);',
  '\\unrestrict abc',
  '-- PostgreSQL database dump complete',
  '',
].join('\n')

const EXPECTED = SCRIPT.replace('\nBEGIN;\n\nSELECT pg_catalog.lo_open', '\n-- BEGIN;\n\nSELECT pg_catalog.lo_open').replace('\nCOMMIT;\n\nCOMMENT', '\n-- COMMIT;\n\nCOMMENT')

/** Runs the filter over `bytes` cut into pieces of the given sizes (cycled). */
function filtered(bytes: Buffer, sizes: readonly number[]): Buffer {
  const filter = new TransactionControlFilter()
  const out: Buffer[] = []
  for (let at = 0, n = 0; at < bytes.length; n++) {
    const size = sizes[n % sizes.length]
    out.push(...filter.push(bytes.subarray(at, at + size)))
    at += size
  }
  out.push(...filter.end())
  return Buffer.concat(out)
}

describe('TransactionControlFilter', () => {
  it("comments out pg_dump's BEGIN and COMMIT around large objects, and nothing else, line for line", () => {
    const output = filtered(Buffer.from(SCRIPT, 'utf8'), [1 << 16]).toString('utf8')
    assert.notEqual(EXPECTED, SCRIPT)
    assert.equal(output, EXPECTED)
    assert.equal(output.split('\n').length, SCRIPT.split('\n').length)
  })

  it('gives the same bytes however the script is cut into chunks, UTF-8 characters split included', () => {
    const bytes = Buffer.from(SCRIPT, 'utf8')
    const expected = Buffer.from(EXPECTED, 'utf8')
    const next = seededRandom(7)
    for (let run = 0; run < 200; run++) {
      const sizes = Array.from({length: 8}, () => 1 + Math.floor(next() * 40))
      assert.deepEqual(filtered(bytes, sizes), expected, `chunk sizes ${sizes.join(',')}`)
    }
    assert.deepEqual(filtered(bytes, [1]), expected)
  })

  it('passes a script that ends without a final newline, or inside COPY data, through whole', () => {
    for (const script of ['SELECT 1;\nCOMMIT', 'COPY t FROM stdin;\n1\n2', 'COPY t FROM stdin;\n1\n\\.']) {
      const output = filtered(Buffer.from(script), [3]).toString()
      assert.equal(output, script.startsWith('SELECT') ? 'SELECT 1;\n-- COMMIT' : script)
    }
  })
})

describe('parseDumpScript', () => {
  it('leaves out BEGIN and COMMIT, and keeps COPY data whole', () => {
    const steps = parseDumpScript(SCRIPT)
    assert.ok(!steps.some((step) => /^(BEGIN|COMMIT);$/.test(step.sql)), JSON.stringify(steps.map((step) => step.sql)))
    const copy = steps.find((step) => step.kind === 'copy')
    assert.equal(copy?.kind === 'copy' && copy.data, '1\tBEGIN;\n2\tCOMMIT;\n3\tünïcødé ✓ \\\\.\n')
    assert.ok(steps.some((step) => step.sql.startsWith('SELECT pg_catalog.lowrite')))
  })
})
