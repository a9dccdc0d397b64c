/**
 * `npm run bench`: starts a throwaway PostgreSQL server (the test harness),
 * runs the selected sections and prints one Markdown table of medians, each
 * next to its baseline measured in the same run. See bench/README.md.
 *
 *   BENCH_SCALE=quick   100k KhronosValue rows, pgbench -s 6, fewer runs
 *   BENCH_ONLY=startup,migrations,khronos,backup
 *   BENCH_RUNS=N        timed runs per case in every section
 *   BENCH_OUT=FILE      also write the report to FILE
 */
import {existsSync, mkdtempSync, rmSync, writeFileSync} from 'node:fs'
import {cpus, loadavg, tmpdir} from 'node:os'
import path from 'node:path'

import {startServer} from '../test/support/postgres.js'
import {backup} from './backup.js'
import {khronos} from './khronos.js'
import {PG_CLIENT_MAJOR, ROOT, progress, readScale, renderTable, selectedSections, type Context, type Row, type Section} from './lib.js'
import {migrations} from './migrations.js'
import {startup} from './startup.js'

const SECTIONS: Record<Section, (context: Context) => Promise<Row[]>> = {startup, migrations, khronos, backup}

if (!existsSync(path.join(ROOT, 'dist', 'commands'))) throw new Error('dist/ is missing: run `npm run bench` (it builds first)')
const scale = readScale()
const sections = selectedSections()
const started = Date.now()
const load = loadavg()[0]
// The machine's pg_dump/psql are PG_CLIENT_MAJOR: a newer server could not be dumped.
const server = await startServer(PG_CLIENT_MAJOR)
const work = mkdtempSync(path.join(tmpdir(), 'tw-db-bench-'))
const rows: Row[] = []
try {
  for (const section of sections) rows.push(...(await SECTIONS[section]({server, scale, work})))
} finally {
  await server.stop()
  rmSync(work, {recursive: true, force: true})
}

const minutes = ((Date.now() - started) / 60_000).toFixed(1)
const report = [
  `Scale ${scale.name}: ${sections.map((s) => `${s} ${scale.runs[s]} runs`).join(', ')}; ` +
    `${scale.khronosRows.toLocaleString('en')} KhronosValue rows; pgbench -s ${scale.pgbenchScale}.`,
  `Node ${process.version}, PostgreSQL ${PG_CLIENT_MAJOR} (server and client), ${cpus().length} CPUs, ` +
    `load average ${load.toFixed(2)} at start, ${loadavg()[0].toFixed(2)} at end; ${minutes} min.`,
  '',
  renderTable(rows),
  '',
].join('\n')
process.stdout.write(report)
if (process.env.BENCH_OUT) writeFileSync(process.env.BENCH_OUT, report)
progress(`done in ${minutes} min`)
