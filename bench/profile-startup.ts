/**
 * Where tw-db's start-up time goes. Profiles `tw-db --version` and
 * `tw-db status` (against an up-to-date database on a throwaway server) with
 * `node --cpu-prof`, and times importing each dependency on its own.
 *
 *   npm run build && node --import tsx bench/profile-startup.ts   (PROFILE_RUNS=N, default 5)
 *
 * Prints Markdown: per command, the CPU time spent with each package on the
 * stack (inclusive: a package's own code plus what it calls, e.g. require())
 * and per module top-level (for CommonJS, loading that module and everything
 * it requires); then the cost of `import(X)` over `node -e 0`.
 */
import {mkdtempSync, readFileSync, readdirSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

import {startServer} from '../test/support/postgres.js'
import {BIN, NODE, PG_CLIENT_MAJOR, ROOT, cleanEnv, createDatabase, formatMs, measure, medianCpuMs, medianMs, runProcess, timeProcess} from './lib.js'

const RUNS = Number(process.env.PROFILE_RUNS ?? 5)
const TOP = 12

interface CallFrame {
  functionName: string
  url: string
  lineNumber: number
}

interface CpuProfile {
  nodes: Array<{id: number; callFrame: CallFrame; children?: number[]}>
  samples: number[]
  timeDeltas: number[]
}

const BUNDLE = path.join(ROOT, 'dist', 'bundle', 'cli.cjs')

/**
 * Which source module each line of the bundle came from: esbuild starts each
 * module's code with a `// node_modules/…` or `// src/…` comment line.
 */
function bundleModules(): (lineNumber: number) => string | undefined {
  const starts: Array<{line: number; module: string}> = []
  readFileSync(BUNDLE, 'latin1')
    .split('\n')
    .forEach((text, line) => {
      const marker = /^\/\/ ((?:node_modules|src)\/\S+)$/.exec(text)
      if (marker) starts.push({line, module: marker[1]})
    })
  const found = new Map<number, string | undefined>()
  return (lineNumber) => {
    if (!found.has(lineNumber)) found.set(lineNumber, starts.findLast((start) => start.line <= lineNumber)?.module)
    return found.get(lineNumber)
  }
}

const moduleAtBundleLine = bundleModules()

/** The file a frame's code comes from, relative to the project; inside the bundle, the module esbuild took it from. */
function sourceOf(frame: CallFrame): string | undefined {
  if (!frame.url.startsWith(`file://${ROOT}`)) return undefined
  const file = frame.url.slice(`file://${ROOT}`.length)
  return frame.url === `file://${BUNDLE}` ? (moduleAtBundleLine(frame.lineNumber) ?? file) : file
}

/** A stack frame's package: `postgres`, `@oclif/core`, `tw-db src/lib/config.ts`, or undefined for node itself. */
function packageOf(frame: CallFrame): string | undefined {
  const source = sourceOf(frame)
  if (!source) return undefined
  const dependency = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(source)
  return dependency ? dependency[1] : `tw-db ${source}`
}

/** The module a top-level frame evaluates: an anonymous file-backed frame, or in the bundle esbuild's wrapper named after the module. */
function moduleOf(frame: CallFrame): string | undefined {
  if (/^(?:node_modules|src)\//.test(frame.functionName)) return frame.functionName.replace(/^node_modules\//, '')
  if (frame.functionName !== '' || !frame.url) return undefined
  return frame.url.replace(/^.*node_modules\//, '').replace(`file://${ROOT}`, '')
}

interface Summary {
  activeMs: number
  byPackage: Map<string, number>
  byModule: Map<string, number>
}

/** Inclusive CPU time per package and per module top-level, averaged over the profiles in `dir`. */
function summarise(dir: string): Summary {
  const files = readdirSync(dir).filter((name) => name.endsWith('.cpuprofile'))
  const summary: Summary = {activeMs: 0, byPackage: new Map(), byModule: new Map()}
  const add = (map: Map<string, number>, key: string, ms: number) => map.set(key, (map.get(key) ?? 0) + ms / files.length)
  for (const file of files) {
    const profile = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as CpuProfile
    const byId = new Map(profile.nodes.map((node) => [node.id, node]))
    const parent = new Map<number, number>()
    for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
    profile.samples.forEach((sample, index) => {
      if (byId.get(sample)!.callFrame.functionName === '(idle)') return
      const ms = (profile.timeDeltas[index] ?? 0) / 1000
      summary.activeMs += ms / files.length
      const packages = new Set<string>()
      const modules = new Set<string>()
      for (let id: number | undefined = sample; id !== undefined; id = parent.get(id)) {
        const frame = byId.get(id)!.callFrame
        packages.add(packageOf(frame) ?? '')
        const module = moduleOf(frame)
        if (module) modules.add(module)
      }
      packages.delete('')
      for (const key of packages.size > 0 ? packages : ['(node only: bootstrap, ESM loader, GC)']) add(summary.byPackage, key, ms)
      for (const key of modules) add(summary.byModule, key, ms)
    })
  }
  return summary
}

function table(title: string, entries: Map<string, number>, activeMs: number): string {
  const rows = [...entries].sort((a, b) => b[1] - a[1]).slice(0, TOP)
  return [`| ${title} | CPU ms | share |`, '| --- | --- | --- |', ...rows.map(([key, ms]) => `| ${key} | ${ms.toFixed(1)} | ${((100 * ms) / activeMs).toFixed(0)} % |`)].join('\n')
}

async function profile(label: string, args: string[], work: string): Promise<string> {
  const dir = mkdtempSync(path.join(work, 'profile-'))
  for (let i = 0; i < RUNS; i++) {
    await runProcess(NODE, ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-interval', '200', BIN, ...args], {env: cleanEnv(), cwd: work})
  }
  const summary = summarise(dir)
  return [
    `### \`${label}\`: ${summary.activeMs.toFixed(0)} ms of CPU on the main thread (mean of ${RUNS} profiles)`,
    '',
    table('package on the stack', summary.byPackage, summary.activeMs),
    '',
    table('module top-level on the stack', summary.byModule, summary.activeMs),
    '',
  ].join('\n')
}

interface ImportCase {
  specifier: string
  /** Extra environment, e.g. to switch off a start-up check. */
  env?: Record<string, string>
}

const IMPORTS: ImportCase[] = [
  {specifier: '@oclif/core'},
  // @oclif/core's index.js loads semver only to compare process.version with its own "engines".
  {specifier: '@oclif/core', env: {OCLIF_DISABLE_ENGINE_WARNING: '1'}},
  {specifier: '@oclif/core/execute'},
  {specifier: 'postgres'},
  {specifier: 'chalk'},
  {specifier: 'cosmiconfig'},
  {specifier: 'yaml'},
  {specifier: 'cli-table3'},
  {specifier: './dist/lib/config.js'},
  {specifier: './dist/base-command.js'},
  {specifier: './dist/bundle/cli.cjs'},
]

async function importCosts(): Promise<string> {
  const importing = ({specifier, env}: ImportCase) => ({
    label: `\`${specifier}\`${env ? ` with ${Object.entries(env).map(([key, value]) => `${key}=${value}`).join(' ')}` : ''}`,
    run: () => timeProcess(NODE, ['--input-type=module', '-e', `await import(${JSON.stringify(specifier)})`], {env: cleanEnv(env), cwd: ROOT}),
  })
  const [bare, ...series] = await measure('imports', [{label: 'node -e 0', run: () => timeProcess(NODE, ['-e', '0'], {env: cleanEnv()})}, ...IMPORTS.map(importing)], RUNS * 2, 1)
  return [
    `### \`import(X)\` on its own, over \`node -e 0\` (${formatMs(medianMs(bare))} wall, ${formatMs(medianCpuMs(bare))} CPU; medians of ${RUNS * 2})`,
    '',
    '| import | extra wall | extra CPU |',
    '| --- | --- | --- |',
    ...series.map((s) => `| ${s.label} | ${formatMs(medianMs(s) - medianMs(bare))} | ${formatMs(medianCpuMs(s) - medianCpuMs(bare))} |`),
    '',
  ].join('\n')
}

const server = await startServer(PG_CLIENT_MAJOR)
const work = mkdtempSync(path.join(tmpdir(), 'tw-db-profile-'))
try {
  const db = await createDatabase(server)
  await runProcess(NODE, [BIN, 'migrate', '--database-url', db.url], {env: cleanEnv(), cwd: work})
  const sections = [await profile('tw-db --version', ['--version'], work), await profile('tw-db status', ['status', '--database-url', db.url], work), await importCosts()]
  process.stdout.write(sections.join('\n'))
} finally {
  await server.stop()
  rmSync(work, {recursive: true, force: true})
}
