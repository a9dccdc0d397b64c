import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {Chalk} from 'chalk'
import stringWidth from 'string-width'

import {renderTable} from '../../src/lib/output.js'

describe('renderTable', () => {
  it('draws a box whose columns are as wide as their widest cell', () => {
    const table = renderTable(['#', 'ID'], [['1', 'khronosvalue_v2'], ['10', 'x']])
    assert.equal(
      table,
      [
        '┌────┬─────────────────┐',
        '│ #  │ ID              │',
        '│ 1  │ khronosvalue_v2 │',
        '│ 10 │ x               │',
        '└────┴─────────────────┘',
      ].join('\n'),
    )
  })

  it('measures cells in terminal columns: colour codes take none, wide characters two', () => {
    const coloured = new Chalk({level: 1})
    const table = renderTable(['State', 'Description'], [[coloured.green('applied'), '表を作る'], ['pending', 'émoji 🐘 here']])
    const lines = table.split('\n')
    assert.equal(new Set(lines.map((line) => stringWidth(line))).size, 1, `every line is as wide as the others:\n${table}`)
    // The borders line up: each │ sits in the same terminal column on every line.
    const borderColumns = (line: string) => [...line.matchAll(/│/g)].map((match) => stringWidth(line.slice(0, match.index)))
    assert.deepEqual(borderColumns(lines[2]), borderColumns(lines[1]))
    assert.deepEqual(borderColumns(lines[3]), borderColumns(lines[1]))
    assert.match(lines[2], /\u001B\[32mapplied\u001B\[39m/)
  })
})
