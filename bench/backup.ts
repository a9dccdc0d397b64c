/**
 * Backup and restore of a pgbench database (`pgbench -i -s 60`: about 1 GB)
 * with tw-db against pg_dump and psql themselves, plus the peak RSS of the
 * tw-db node process and, separately, of the pg_dump/psql it runs.
 */
import {rmSync, statSync} from 'node:fs'
import path from 'node:path'

import {
  BIN,
  NODE,
  cleanEnv,
  createDatabase,
  formatMb,
  measure,
  peakRssKb,
  pgTool,
  progress,
  ratioRow,
  RSS_TARGET,
  rssRow,
  runProcess,
  timeProcess,
  timeRow,
  withDatabase,
  type Context,
  type Row,
  type Run,
} from './lib.js'

export async function backup({server, scale, work}: Context): Promise<Row[]> {
  const env = cleanEnv()
  const source = await createDatabase(server)
  progress(`[backup] pgbench -i -s ${scale.pgbenchScale}`)
  await runProcess(pgTool('pgbench'), ['-i', '-q', '-s', String(scale.pgbenchScale), '-h', server.host, '-p', String(server.port), '-U', 'postgres', source.name], {env})
  const [{size}] = await server.admin`select pg_size_pretty(pg_database_size(${source.name})) as size`
  const dump = path.join(work, 'restore-source.sql')
  await runProcess(pgTool('pg_dump'), ['-Fp', '-d', source.url, '-f', dump], {env})
  const dumpSize = formatMb(statSync(dump).size / 1024)

  /** A dump to a file that is removed after the run, so that runs do not pile up gigabytes. */
  const toFile = async (name: string, dumpTo: (file: string) => Promise<Run>) => {
    const file = path.join(work, name)
    try {
      return await dumpTo(file)
    } finally {
      rmSync(file, {force: true})
    }
  }
  const backupSection = `backup (${size} database)`
  const [pgDumpFile, pgDumpNull, twDbBackup, twDbBackupNull] = await measure(
    'backup',
    [
      {
        label: 'pg_dump -Fp -f FILE',
        memory: true,
        run: (watchRss) => toFile('pg_dump.sql', (file) => timeProcess(pgTool('pg_dump'), ['-Fp', '-d', source.url, '-f', file], {env, watchRss})),
      },
      {label: 'pg_dump -Fp > /dev/null', run: () => timeProcess(pgTool('pg_dump'), ['-Fp', '-d', source.url], {env, stdout: '/dev/null'})},
      {
        label: 'tw-db backup -o FILE',
        memory: true,
        run: (watchRss) => toFile('tw-db.sql', (file) => timeProcess(NODE, [BIN, 'backup', '-o', file, '--database-url', source.url], {env, cwd: work, watchRss})),
      },
      {
        label: 'tw-db backup > /dev/null',
        memory: true,
        run: (watchRss) => timeProcess(NODE, [BIN, 'backup', '--database-url', source.url], {env, cwd: work, stdout: '/dev/null', watchRss}),
      },
    ],
    scale.runs.backup,
  )

  const restoreSection = `restore (${dumpSize} plain dump)`
  const [psql, twDbRestore] = await measure(
    'restore',
    [
      {
        label: 'psql -X -q -1 -v ON_ERROR_STOP=1 -f FILE',
        run: () => withDatabase(server, (db) => timeProcess(pgTool('psql'), ['-X', '-q', '-1', '-v', 'ON_ERROR_STOP=1', '-d', db.url, '-f', dump], {env})),
      },
      {
        label: 'tw-db restore FILE',
        memory: true,
        run: (watchRss) => withDatabase(server, (db) => timeProcess(NODE, [BIN, 'restore', dump, '--database-url', db.url], {env, cwd: work, watchRss})),
      },
    ],
    scale.runs.backup,
  )

  return [
    timeRow(backupSection, pgDumpFile),
    timeRow(backupSection, pgDumpNull),
    ratioRow(backupSection, twDbBackupNull, pgDumpNull, {op: '<=', limit: 1.1, unit: 'x'}),
    // Not the same work: tw-db fsyncs the file before renaming it, pg_dump -f never does.
    ratioRow(backupSection, twDbBackup, pgDumpFile),
    ratioRow(backupSection, twDbBackup, pgDumpNull),
    rssRow(backupSection, 'tw-db backup peak RSS (node)', peakRssKb(twDbBackup), RSS_TARGET),
    rssRow(backupSection, 'tw-db backup > /dev/null peak RSS (node)', peakRssKb(twDbBackupNull), RSS_TARGET),
    rssRow(backupSection, 'pg_dump peak RSS, run by tw-db', peakRssKb(twDbBackup, 'pg_dump')),
    rssRow(backupSection, 'pg_dump peak RSS, run alone', peakRssKb(pgDumpFile)),
    timeRow(restoreSection, psql),
    ratioRow(restoreSection, twDbRestore, psql, {op: '<=', limit: 1.05, unit: 'x'}),
    rssRow(restoreSection, 'tw-db restore peak RSS (node)', peakRssKb(twDbRestore), RSS_TARGET),
    rssRow(restoreSection, 'psql peak RSS, run by tw-db', peakRssKb(twDbRestore, 'psql')),
  ]
}
