import assert from 'node:assert/strict'
import {describe, it} from 'node:test'

import {TwDbError} from '../../src/lib/errors.js'
import type {LedgerRow} from '../../src/lib/ledger.js'
import {isUpToDate, plan, refusal, selectTarget, statusReport, type Problem} from '../../src/lib/migrator.js'
import type {Migration} from '../../src/lib/registry.js'

function migration(n: number, id: string): Migration {
  const prefix = String(n).padStart(4, '0')
  return {
    prefix,
    id,
    description: `Migration ${id}`,
    transaction: true,
    checksum: `${id}-checksum`.padEnd(64, '0'),
    replacedChecksums: [],
    sql: `select ${n};`,
    file: `/registry/${prefix}_${id}.sql`,
  }
}

function row(id: string, options: Partial<Omit<LedgerRow, 'id'>> = {}): LedgerRow {
  return {
    id,
    appliedAt: options.appliedAt === undefined ? new Date('2024-05-01T10:00:00Z') : options.appliedAt,
    checksum: options.checksum === undefined ? null : options.checksum,
    durationMs: options.durationMs === undefined ? null : options.durationMs,
    appliedBy: options.appliedBy === undefined ? null : options.appliedBy,
  }
}

/** A ledger row as tw-db writes it: with the registry file's checksum. */
function recorded(m: Migration, appliedAt = new Date('2024-05-01T10:00:00Z')): LedgerRow {
  return row(m.id, {checksum: m.checksum, appliedAt, durationMs: 12, appliedBy: 'tw-db 0.1.0'})
}

const REGISTRY = [
  migration(1, 'khronosvalue_v2'),
  migration(2, 'kv_generic'),
  migration(3, 'tenantstate'),
  migration(4, 'cleanup_v8'),
  migration(5, 'drop_tenant_kv_expires_at'),
]
const [M1, M2, M3, M4, M5] = REGISTRY

const states = (p: ReturnType<typeof plan>) => p.entries.map((e) => [e.id, e.state])

describe('plan', () => {
  it('on a fresh database: every migration pending, in registry order, no problems', () => {
    const p = plan(REGISTRY, [])
    assert.deepEqual(p.pending.map((m) => m.id), REGISTRY.map((m) => m.id))
    assert.deepEqual(states(p), REGISTRY.map((m) => [m.id, 'pending']))
    assert.deepEqual(p.problems, [])
  })

  it('with every migration recorded: all applied, nothing pending, no problems', () => {
    const p = plan(REGISTRY, REGISTRY.map((m) => recorded(m)))
    assert.deepEqual(p.pending, [])
    assert.deepEqual(states(p), REGISTRY.map((m) => [m.id, 'applied']))
    assert.deepEqual(p.problems, [])
  })

  it('counts ledger rows without checksum (written by the Rust worker) as applied', () => {
    const p = plan(REGISTRY, [row('khronosvalue_v2'), row('kv_generic'), row('tenantstate')])
    assert.deepEqual(states(p), [
      ['khronosvalue_v2', 'applied'],
      ['kv_generic', 'applied'],
      ['tenantstate', 'applied'],
      ['cleanup_v8', 'pending'],
      ['drop_tenant_kv_expires_at', 'pending'],
    ])
    assert.deepEqual(p.pending.map((m) => m.id), ['cleanup_v8', 'drop_tenant_kv_expires_at'])
    assert.deepEqual(p.problems, [])
  })

  it('marks an applied migration whose file changed as modified, with both checksums', () => {
    const changed = 'f'.repeat(64)
    const p = plan(REGISTRY, [recorded(M1), row('kv_generic', {checksum: changed})])
    assert.equal(p.entries[1].state, 'modified')
    assert.deepEqual(p.problems, [{kind: 'modified', id: 'kv_generic', recorded: changed, current: M2.checksum}])
    assert.deepEqual(p.pending.map((m) => m.id), ['tenantstate', 'cleanup_v8', 'drop_tenant_kv_expires_at'])
  })

  it('takes a ledger row holding a checksum the file replaces as applied, and any other as modified', () => {
    const earlier = 'e'.repeat(64)
    const rewritten = {...M2, replacedChecksums: [earlier]}
    const p = plan([M1, rewritten], [recorded(M1), row('kv_generic', {checksum: earlier})])
    assert.equal(p.entries[1].state, 'applied')
    assert.deepEqual(p.problems, [])
    const other = plan([M1, rewritten], [recorded(M1), row('kv_generic', {checksum: 'f'.repeat(64)})])
    assert.equal(other.entries[1].state, 'modified')
  })

  it('lists ledger rows the registry does not know as unknown, after the registry entries', () => {
    const ledger = [
      row('zz_newer', {appliedAt: new Date('2024-06-02T00:00:00Z')}),
      ...REGISTRY.map((m) => recorded(m)),
      row('aa_newest', {appliedAt: new Date('2024-06-03T00:00:00Z')}),
      row('mm_first_unknown', {appliedAt: new Date('2024-06-01T00:00:00Z')}),
    ]
    const p = plan(REGISTRY, ledger)
    assert.deepEqual(
      p.entries.map((e) => e.id),
      [...REGISTRY.map((m) => m.id), 'mm_first_unknown', 'zz_newer', 'aa_newest'],
    )
    assert.deepEqual(p.entries.slice(5).map((e) => e.state), ['unknown', 'unknown', 'unknown'])
    assert.equal(p.entries[5].migration, undefined)
    assert.deepEqual(p.problems, [
      {kind: 'unknown', id: 'mm_first_unknown'},
      {kind: 'unknown', id: 'zz_newer'},
      {kind: 'unknown', id: 'aa_newest'},
    ])
  })

  it('sorts unknown rows applied at the same time by id', () => {
    const when = new Date('2024-06-01T00:00:00Z')
    const p = plan([M1], [recorded(M1), row('b_unknown', {appliedAt: when}), row('a_unknown', {appliedAt: when})])
    assert.deepEqual(p.entries.map((e) => e.id), ['khronosvalue_v2', 'a_unknown', 'b_unknown'])
  })

  it('detects a pending migration that sorts before an applied one as out of order', () => {
    const p = plan(REGISTRY, [recorded(M1), recorded(M3)])
    assert.deepEqual(p.pending.map((m) => m.id), ['kv_generic', 'cleanup_v8', 'drop_tenant_kv_expires_at'])
    assert.deepEqual(p.problems, [{kind: 'out-of-order', id: 'kv_generic', appliedAfter: 'tenantstate'}])
  })

  it('names the last applied migration for every out-of-order one', () => {
    const p = plan(REGISTRY, [row('cleanup_v8')])
    assert.deepEqual(p.problems, [
      {kind: 'out-of-order', id: 'khronosvalue_v2', appliedAfter: 'cleanup_v8'},
      {kind: 'out-of-order', id: 'kv_generic', appliedAfter: 'cleanup_v8'},
      {kind: 'out-of-order', id: 'tenantstate', appliedAfter: 'cleanup_v8'},
    ])
  })

  it('does not call pending migrations after the last applied one out of order', () => {
    const p = plan(REGISTRY, [recorded(M1), recorded(M2)])
    assert.deepEqual(p.problems, [])
  })

  it('keeps the ledger row on applied entries', () => {
    const r = recorded(M1)
    const p = plan(REGISTRY, [r])
    assert.equal(p.entries[0].ledger, r)
    assert.equal(p.entries[0].migration, M1)
    assert.equal(p.entries[1].ledger, undefined)
  })
})

describe('selectTarget', () => {
  it('applies every pending migration without --target', () => {
    const {toApply, remaining} = selectTarget(REGISTRY, REGISTRY)
    assert.deepEqual(toApply.map((m) => m.id), REGISTRY.map((m) => m.id))
    assert.deepEqual(remaining, [])
  })

  it('stops after the --target migration and leaves the rest pending', () => {
    const {toApply, remaining} = selectTarget(REGISTRY, REGISTRY, 'tenantstate')
    assert.deepEqual(toApply.map((m) => m.id), ['khronosvalue_v2', 'kv_generic', 'tenantstate'])
    assert.deepEqual(remaining.map((m) => m.id), ['cleanup_v8', 'drop_tenant_kv_expires_at'])
  })

  it('applies only the pending ones up to the target when some are applied', () => {
    const {toApply, remaining} = selectTarget(REGISTRY, [M3, M4, M5], 'cleanup_v8')
    assert.deepEqual(toApply.map((m) => m.id), ['tenantstate', 'cleanup_v8'])
    assert.deepEqual(remaining.map((m) => m.id), ['drop_tenant_kv_expires_at'])
  })

  it('applies nothing when the target is already applied', () => {
    const {toApply, remaining} = selectTarget(REGISTRY, [M4, M5], 'kv_generic')
    assert.deepEqual(toApply, [])
    assert.deepEqual(remaining.map((m) => m.id), ['cleanup_v8', 'drop_tenant_kv_expires_at'])
  })

  it('refuses an unknown --target with E_USAGE, exit 2, listing the known ids', () => {
    assert.throws(
      () => selectTarget(REGISTRY, REGISTRY, 'no_such_migration'),
      (error: unknown) => {
        assert.ok(error instanceof TwDbError)
        assert.equal(error.code, 'E_USAGE')
        assert.equal(error.exit, 2)
        assert.match(error.message, /no_such_migration/)
        assert.ok(error.hint?.includes('khronosvalue_v2, kv_generic, tenantstate, cleanup_v8, drop_tenant_kv_expires_at'), error.hint)
        return true
      },
    )
  })
})

describe('refusal', () => {
  const modified: Problem = {kind: 'modified', id: 'kv_generic', recorded: 'a'.repeat(64), current: 'b'.repeat(64)}
  const outOfOrder: Problem = {kind: 'out-of-order', id: 'kv_generic', appliedAfter: 'tenantstate'}
  const unknown: Problem = {kind: 'unknown', id: 'from_the_future'}

  it('refuses nothing when there are no problems', () => {
    assert.equal(refusal([], {}), undefined)
  })

  it('does not refuse because of unknown migrations', () => {
    assert.equal(refusal([unknown], {}), undefined)
  })

  it('refuses a modified applied migration with E_CHECKSUM, exit 1, naming it and both checksums', () => {
    const error = refusal([modified], {})
    assert.ok(error instanceof TwDbError)
    assert.equal(error.code, 'E_CHECKSUM')
    assert.equal(error.exit, 1)
    assert.match(error.message, /kv_generic/)
    assert.ok(error.message.includes('a'.repeat(12)) && error.message.includes('b'.repeat(12)), error.message)
    assert.ok(error.hint && error.hint.length > 0)
  })

  it('names every modified migration', () => {
    const other: Problem = {kind: 'modified', id: 'tenantstate', recorded: 'c'.repeat(64), current: 'd'.repeat(64)}
    const error = refusal([modified, other], {})
    assert.equal(error?.code, 'E_CHECKSUM')
    assert.match(error!.message, /kv_generic, tenantstate/)
  })

  it('lets --ignore-checksums lift the checksum refusal', () => {
    assert.equal(refusal([modified, unknown], {ignoreChecksums: true}), undefined)
  })

  it('refuses out-of-order migrations with E_OUT_OF_ORDER, exit 1', () => {
    const error = refusal([outOfOrder], {})
    assert.ok(error instanceof TwDbError)
    assert.equal(error.code, 'E_OUT_OF_ORDER')
    assert.equal(error.exit, 1)
    assert.match(error.message, /kv_generic/)
    assert.match(error.message, /tenantstate/)
  })

  it('does not let --ignore-checksums lift the out-of-order refusal', () => {
    assert.equal(refusal([outOfOrder], {ignoreChecksums: true})?.code, 'E_OUT_OF_ORDER')
    assert.equal(refusal([modified, outOfOrder], {ignoreChecksums: true})?.code, 'E_OUT_OF_ORDER')
  })

  it('reports the checksum refusal first when both apply', () => {
    assert.equal(refusal([outOfOrder, modified], {})?.code, 'E_CHECKSUM')
  })

  it('refuses a plan with a modified migration end to end', () => {
    const p = plan(REGISTRY, [row('khronosvalue_v2', {checksum: '0'.repeat(64)})])
    assert.equal(refusal(p.problems, {})?.code, 'E_CHECKSUM')
    assert.equal(refusal(p.problems, {ignoreChecksums: true}), undefined)
  })
})

describe('statusReport and isUpToDate', () => {
  it('counts every state in the summary', () => {
    const ledger = [
      recorded(M1),
      row('kv_generic'),
      row('tenantstate', {checksum: 'e'.repeat(64)}),
      row('from_the_future', {appliedAt: new Date('2025-01-01T00:00:00Z')}),
    ]
    const report = statusReport(plan(REGISTRY, ledger))
    assert.deepEqual(report.summary, {applied: 2, pending: 2, modified: 1, unknown: 1})
    assert.deepEqual(
      report.migrations.map((m) => [m.id, m.state]),
      [
        ['khronosvalue_v2', 'applied'],
        ['kv_generic', 'applied'],
        ['tenantstate', 'modified'],
        ['cleanup_v8', 'pending'],
        ['drop_tenant_kv_expires_at', 'pending'],
        ['from_the_future', 'unknown'],
      ],
    )
    assert.equal(isUpToDate(report), false)
  })

  it('fills every JSON field of an applied row', () => {
    const report = statusReport(plan([M1], [row('khronosvalue_v2', {checksum: M1.checksum, durationMs: 42, appliedAt: new Date('2024-05-01T10:00:00Z')})]))
    assert.deepEqual(report.migrations[0], {
      id: 'khronosvalue_v2',
      description: 'Migration khronosvalue_v2',
      state: 'applied',
      appliedAt: '2024-05-01T10:00:00.000Z',
      durationMs: 42,
      checksum: M1.checksum,
      recordedChecksum: M1.checksum,
    })
  })

  it('gives a Rust-written row a null recorded checksum and duration', () => {
    const report = statusReport(plan([M1], [row('khronosvalue_v2')]))
    assert.equal(report.migrations[0].state, 'applied')
    assert.equal(report.migrations[0].recordedChecksum, null)
    assert.equal(report.migrations[0].durationMs, null)
    assert.equal(report.migrations[0].checksum, M1.checksum)
  })

  it('gives a pending row nulls for everything the ledger would hold', () => {
    const report = statusReport(plan([M1], []))
    assert.deepEqual(report.migrations[0], {
      id: 'khronosvalue_v2',
      description: 'Migration khronosvalue_v2',
      state: 'pending',
      appliedAt: null,
      durationMs: null,
      checksum: M1.checksum,
      recordedChecksum: null,
    })
  })

  it('gives an unknown row no description and no file checksum', () => {
    const report = statusReport(plan([], [row('from_the_future', {checksum: 'c'.repeat(64)})]))
    assert.equal(report.migrations[0].description, null)
    assert.equal(report.migrations[0].checksum, null)
    assert.equal(report.migrations[0].recordedChecksum, 'c'.repeat(64))
  })

  it('is up to date only when every migration is applied', () => {
    assert.equal(isUpToDate(statusReport(plan(REGISTRY, REGISTRY.map((m) => recorded(m))))), true)
    assert.equal(isUpToDate(statusReport(plan(REGISTRY, REGISTRY.map((m) => row(m.id))))), true)
  })

  it('is not up to date with one pending migration', () => {
    assert.equal(isUpToDate(statusReport(plan(REGISTRY, REGISTRY.slice(0, 4).map((m) => recorded(m))))), false)
  })

  it('is not up to date with a modified migration', () => {
    const ledger = REGISTRY.map((m) => (m === M5 ? row(m.id, {checksum: '1'.repeat(64)}) : recorded(m)))
    assert.equal(isUpToDate(statusReport(plan(REGISTRY, ledger))), false)
  })

  it('is not up to date with an unknown migration', () => {
    const ledger = [...REGISTRY.map((m) => recorded(m)), row('from_the_future')]
    assert.equal(isUpToDate(statusReport(plan(REGISTRY, ledger))), false)
  })

  it('is up to date with an empty registry and an empty ledger', () => {
    const report = statusReport(plan([], []))
    assert.deepEqual(report.summary, {applied: 0, pending: 0, modified: 0, unknown: 0})
    assert.equal(isUpToDate(report), true)
  })
})
