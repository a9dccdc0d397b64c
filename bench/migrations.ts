/**
 * Applying 200 small migrations (a generated fixture registry) to a fresh
 * database, each in its own transaction, with tw-db, psql, dbmate and
 * node-pg-migrate. Every run gets a new empty database.
 */
import {writeFileSync} from 'node:fs'
import path from 'node:path'

import {
  BIN,
  NODE,
  cleanEnv,
  DBMATE,
  dbmateArgs,
  measure,
  nodePgMigrateArgs,
  peakRssKb,
  pgTool,
  queryOne,
  ratioRow,
  RSS_TARGET,
  rssRow,
  runProcess,
  timeProcess,
  timed,
  timeRow,
  withDatabase,
  writeRegistries,
  type Context,
  type MigrationFile,
  type Row,
  type Run,
} from './lib.js'

const SECTION = '200 migrations'
export const MIGRATION_COUNT = 200
const PSQL_FLAGS = ['-X', '-q', '-v', 'ON_ERROR_STOP=1']

/**
 * What a schema's history looks like: every fifth migration creates a table,
 * the next four add a column, an index, a few rows and a view on it.
 */
export function fixtureMigrations(count = MIGRATION_COUNT): MigrationFile[] {
  return Array.from({length: count}, (_, index) => {
    const n = index + 1
    const prefix = String(n).padStart(4, '0')
    const table = `bench_t${String(n - (index % 5)).padStart(4, '0')}`
    const [id, description, sql] = [
      [`create_${table}`, `Create ${table}`, `CREATE TABLE ${table} (\n  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n  name text NOT NULL,\n  created_at timestamptz NOT NULL DEFAULT now()\n);`],
      [`add_note_${prefix}`, `Add a note column to ${table}`, `ALTER TABLE ${table} ADD COLUMN note_${prefix} text NOT NULL DEFAULT '';`],
      [`index_${table}_name`, `Index ${table} by name`, `CREATE INDEX ${table}_name_idx ON ${table} (name);`],
      [`seed_${table}`, `Seed ${table}`, `INSERT INTO ${table} (name) SELECT 'row ' || g FROM generate_series(1, 20) AS g;`],
      [`view_${table}`, `A view of ${table}'s recent rows`, `CREATE VIEW ${table}_recent AS\n  SELECT id, name FROM ${table} WHERE created_at > now() - interval '1 day';`],
    ][index % 5]
    return {name: `${prefix}_${id}.sql`, sql: `-- description: ${description}\n\n${sql}\n`}
  })
}

/** Fails unless every fixture migration was applied: the last of each group of five creates a view. */
async function assertMigrated(url: string, count = MIGRATION_COUNT): Promise<void> {
  const {views, rows} = await queryOne<{views: number; rows: number}>(
    url,
    `select (select count(*)::int from pg_views where viewname like 'bench_t%_recent') as views,
            (select count(*)::int from bench_t${String(count - 4).padStart(4, '0')}) as rows`,
  )
  if (views !== count / 5 || rows !== 20) throw new Error(`the fixture registry was not applied in full: ${views} views, ${rows} seeded rows`)
}

export async function migrations({server, scale, work}: Context): Promise<Row[]> {
  const registries = writeRegistries(path.join(work, 'migrations-registry'), fixtureMigrations())
  // One psql session, each file between BEGIN and COMMIT: no process start per file.
  const session = path.join(work, 'migrations-session.sql')
  writeFileSync(session, registries.files.map((file) => `BEGIN;\n\\i ${file}\nCOMMIT;\n`).join(''))
  const env = cleanEnv()

  /** One run on a new empty database, checked afterwards. */
  const applying = (work: (url: string) => Promise<Run>) => () =>
    withDatabase(server, async (db) => {
      const run = await work(db.url)
      await assertMigrated(db.url)
      return run
    })
  const psql = pgTool('psql')
  const [psqlSession, psqlPerFile, dbmate, npm, twDb] = await measure(
    SECTION,
    [
      {label: 'psql, one session, BEGIN/COMMIT per file', run: applying((url) => timeProcess(psql, [...PSQL_FLAGS, '-d', url, '-f', session], {env}))},
      {
        label: 'psql -1 -f, one process per file',
        run: applying((url) =>
          timed(async () => {
            for (const file of registries.files) await runProcess(psql, [...PSQL_FLAGS, '-1', '-d', url, '-f', file], {env})
          }),
        ),
      },
      {label: 'dbmate up', run: applying((url) => timeProcess(DBMATE, dbmateArgs(url, registries.dbmate, 'up'), {env}))},
      {label: 'node-pg-migrate up', run: applying((url) => timeProcess(NODE, nodePgMigrateArgs(registries.twDb), {env: cleanEnv({DATABASE_URL: url})}))},
      {
        label: 'tw-db migrate',
        memory: true,
        run: (watchRss) =>
          applying((url) => timeProcess(NODE, [BIN, 'migrate', '--migrations-dir', registries.twDb, '--database-url', url], {env, cwd: work, watchRss}))(),
      },
    ],
    scale.runs.migrations,
  )

  return [
    timeRow(SECTION, psqlSession),
    timeRow(SECTION, psqlPerFile),
    timeRow(SECTION, dbmate),
    timeRow(SECTION, npm),
    ratioRow(SECTION, twDb, psqlSession, {op: '<=', limit: 2, unit: 'x'}),
    ratioRow(SECTION, twDb, psqlPerFile, {op: '<=', limit: 2, unit: 'x'}),
    ratioRow(SECTION, twDb, dbmate, {op: '<', limit: 1, unit: 'x'}),
    ratioRow(SECTION, twDb, npm, {op: '<', limit: 1, unit: 'x'}),
    rssRow(SECTION, 'tw-db migrate peak RSS', peakRssKb(twDb), RSS_TARGET),
  ]
}
