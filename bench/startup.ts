/**
 * Start-up: how long a short command takes from spawn to exit, against the
 * floors it cannot beat (node itself, psql, node + postgres.js doing one
 * SELECT) and the tools a user could have picked instead. Every database
 * here is up to date with the bundled registry (5 migrations), each migrated
 * by the tool that then reports on it.
 */
import {readFileSync, readdirSync} from 'node:fs'
import path from 'node:path'

import {
  BIN,
  NODE,
  ROOT,
  cleanEnv,
  createDatabase,
  DBMATE,
  dbmateArgs,
  measure,
  nodePgMigrateArgs,
  pgTool,
  progress,
  ratioRow,
  runProcess,
  timeProcess,
  timeRow,
  writeRegistries,
  type Context,
  type Row,
} from './lib.js'

const SECTION = 'start-up'
const BUNDLED = path.join(ROOT, 'src', 'migrations')
const ONE_SELECT = path.join(ROOT, 'bench', 'one-select.mjs')

export async function startup({server, scale, work}: Context): Promise<Row[]> {
  const bundled = readdirSync(BUNDLED)
    .filter((name) => name.endsWith('.sql'))
    .map((name) => ({name, sql: readFileSync(path.join(BUNDLED, name), 'utf8')}))
  const registries = writeRegistries(path.join(work, 'startup-registry'), bundled)
  const env = cleanEnv()

  progress(`[${SECTION}] migrating one database per tool with the bundled registry`)
  const twDb = await createDatabase(server)
  await runProcess(NODE, [BIN, 'migrate', '--database-url', twDb.url], {env, cwd: work})
  const dbmate = await createDatabase(server)
  await runProcess(DBMATE, dbmateArgs(dbmate.url, registries.dbmate, 'up'), {env, cwd: work})
  const npm = await createDatabase(server)
  const npmEnv = cleanEnv({DATABASE_URL: npm.url})
  await runProcess(NODE, nodePgMigrateArgs(registries.twDb), {env: npmEnv, cwd: work})

  const run = (command: string, args: string[], runEnv = env) => () => timeProcess(command, args, {env: runEnv, cwd: work})
  const [nodeBare, psql, oneSelect, dbmateStatus, npmDryRun, version, status] = await measure(
    SECTION,
    [
      {label: 'node -e 0', run: run(NODE, ['-e', '0'])},
      {label: "psql -c 'select 1'", run: run(pgTool('psql'), ['-X', '-q', '-d', twDb.url, '-c', 'select 1'])},
      {label: 'node + postgres.js, one SELECT', run: run(NODE, [ONE_SELECT, twDb.url])},
      {label: 'dbmate status', run: run(DBMATE, dbmateArgs(dbmate.url, registries.dbmate, 'status'))},
      {label: 'node-pg-migrate up --dry-run', run: run(NODE, nodePgMigrateArgs(registries.twDb, ['--dry-run']), npmEnv)},
      {label: 'tw-db --version', run: run(NODE, [BIN, '--version'])},
      {label: 'tw-db status', run: run(NODE, [BIN, 'status', '--database-url', twDb.url])},
    ],
    scale.runs.startup,
    1,
  )

  return [
    timeRow(SECTION, nodeBare),
    timeRow(SECTION, psql),
    timeRow(SECTION, oneSelect),
    timeRow(SECTION, dbmateStatus),
    timeRow(SECTION, npmDryRun),
    ratioRow(SECTION, version, nodeBare, {op: '<=', limit: 4.5, unit: 'x'}),
    ratioRow(SECTION, status, oneSelect, {op: '<=', limit: 1.6, unit: 'x'}),
    ratioRow(SECTION, status, npmDryRun, {op: '<=', limit: 0.5, unit: 'x'}),
    ratioRow(SECTION, status, dbmateStatus),
    ratioRow(SECTION, status, psql),
  ]
}
