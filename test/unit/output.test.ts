import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import type {StatusReport} from '../../src/lib/migrator.js'
import {renderStatus} from '../../src/lib/output.js'

/** Terminal columns of the text used here: colour codes take none, CJK and emoji two. */
function stringWidth(text: string): number {
  const wide = /[\u{2E80}-\u{A4CF}\u{AC00}-\u{D7A3}\u{F900}-\u{FAFF}\u{FF00}-\u{FF60}\u{1F300}-\u{1FAFF}]/u
  return [...text.replace(/\u001B\[[0-9;]*m/g, '')].reduce((width, char) => width + (wide.test(char) ? 2 : 1), 0)
}

describe('renderStatus', () => {
  it('lines the columns up in terminal columns, wide characters included, and sums up the states', async () => {
    const report: StatusReport = {
      migrations: [
        {id: 'first', description: 'Create the 表 table', state: 'applied', appliedAt: '2026-12-02T01:02:03.456Z', durationMs: 12, checksum: 'a'.repeat(64), recordedChecksum: 'b'.repeat(64)},
        {id: 'second_one', description: 'Add an émoji 🐘 column', state: 'pending', appliedAt: null, durationMs: null, checksum: 'c'.repeat(64), recordedChecksum: null},
      ],
      summary: {applied: 1, pending: 1, modified: 0, unknown: 0},
    }
    const lines = (await renderStatus(report)).split('\n')
    const table = lines.slice(0, -1)
    assert.equal(new Set(table.map((line) => stringWidth(line))).size, 1, `every line of the table is as wide as the others:\n${lines.join('\n')}`)
    const borderColumns = (line: string) => [...line.matchAll(/│/g)].map((match) => stringWidth(line.slice(0, match.index)))
    for (const line of table.slice(2, -1)) assert.deepEqual(borderColumns(line), borderColumns(table[1]))
    assert.match(table[2], /│ 1 │ first +│ Create the 表 table +│ applied │ 2026-12-02 01:02:03Z │ 12 ms +│ bbbbbbbbbbbb │/)
    assert.match(table[3], /│ 2 │ second_one +│ Add an émoji 🐘 column │ pending │ - +│ - +│ cccccccccccc │/)
    assert.equal(lines.at(-1), '1 applied, 1 pending')
  })
})
