/**
 * The CLI runs from the bundle that `npm run build` writes
 * (scripts/bundle.mjs), with the V8 code cache the build saved for it
 * (scripts/code-cache.mjs), loaded by bin/load-cli.js.
 */
import assert from 'node:assert/strict'
import {isAscii} from 'node:buffer'
import {execFileSync} from 'node:child_process'
import {readFileSync, writeFileSync} from 'node:fs'
import {createRequire, isBuiltin} from 'node:module'
import path from 'node:path'
import {describe, it} from 'node:test'
import {fileURLToPath, pathToFileURL} from 'node:url'

import {Config} from '@oclif/core'

import {ROOT, runCli} from '../support/cli.js'
import {testMajors, useServers} from '../support/postgres.js'
import {temporaryDirectory} from '../support/temp.js'

const BUNDLE = path.join(ROOT, 'dist', 'bundle', 'cli.cjs')
const LOADER = pathToFileURL(path.join(ROOT, 'bin', 'load-cli.js')).href
const RECORD_IMPORTS = path.join(ROOT, 'test', 'support', 'record-imports.mjs')
const {asScript} = createRequire(import.meta.url)(path.join(ROOT, 'bin', 'load-cli.js')) as {asScript: (code: string) => string}
const major = testMajors()[0]
const servers = useServers([major])

/** Runs `code` (an ES module) in a node started as bin/run.js is, so V8 judges the cache as it would there. */
function runNode(code: string): string {
  return execFileSync(process.execPath, ['--input-type=module', '-e', code], {cwd: ROOT, encoding: 'utf8'})
}

describe('the bundled CLI', () => {
  it('requires nothing but node built-ins: everything else is in the bundle', () => {
    const required = [...readFileSync(BUNDLE, 'utf8').matchAll(/\brequire\("([^"]+)"\)/g)].map((match) => match[1])
    assert.ok(required.includes('node:fs') || required.includes('fs'), 'the pattern finds the require() calls')
    // typescript only for oclif's development mode and a tw-db.config.ts, when asked for.
    assert.deepEqual([...new Set(required)].filter((name) => !isBuiltin(name)), ['typescript'])
  })

  it('never enumerates the namespace of a built-in, which only inherits its properties (scripts/bundle.mjs)', () => {
    const source = readFileSync(BUNDLE, 'latin1')
    const namespaces = [...source.matchAll(/\b([\w$]+) = builtinNamespace\(/g)].map((match) => match[1])
    assert.ok(namespaces.includes('import_node_fs'), `the pattern finds the namespaces: ${namespaces.join(', ')}`)
    const enumerations = namespaces.flatMap((name) => {
      const escaped = name.replace(/\$/g, '\\$')
      const uses = new RegExp(`(\\.\\.\\.${escaped}\\b|Object\\.(keys|values|entries|assign|getOwnPropertyNames)\\([^)]*\\b${escaped}\\b|\\bin ${escaped}\\b|__(copyProps|reExport)\\([^)]*\\b${escaped}\\b)`, 'g')
      return [...source.matchAll(uses)].map((match) => match[0])
    })
    assert.deepEqual(enumerations, [])
  })

  it('is ASCII, which the loader reads as Latin-1', () => {
    assert.ok(isAscii(readFileSync(BUNDLE)))
  })

  it('starts from the code cache the build saved', () => {
    assert.equal(runNode(`import {loadBundle} from ${JSON.stringify(LOADER)}; process.stdout.write(String(loadBundle().cacheUsed))`), 'true')
  })

  it('is also a CommonJS module that require() runs (oclif manifest loads the commands so)', () => {
    const required = `import {createRequire} from 'node:module'; const bundle = createRequire(import.meta.url)(${JSON.stringify(BUNDLE)});`
    assert.equal(runNode(`${required} process.stdout.write(Object.keys(bundle.COMMANDS).sort().join(' '))`), 'backup check-connection migrate reset restore status')
  })

  it('never uses a cache made from another bundle of the same length', () => {
    const bundle = path.join(temporaryDirectory(), 'cli.cjs')
    const script = (answer: string) => asScript(`module.exports = {answer: '${answer}', twice: (n) => n * 2}`)
    const load = (label: string) =>
      `import {loadBundle, codeCacheFor, codeCachePath} from ${JSON.stringify(LOADER)}; import {writeFileSync} from 'node:fs';` +
      `const loaded = loadBundle(${JSON.stringify(bundle)}); loaded.exports.twice(2);` +
      `if (${JSON.stringify(label)} === 'save') writeFileSync(codeCachePath(${JSON.stringify(bundle)}), codeCacheFor(loaded.script, loaded.id));` +
      `process.stdout.write(JSON.stringify([loaded.exports.answer, loaded.cacheUsed]))`

    writeFileSync(bundle, script('old'))
    assert.deepEqual(JSON.parse(runNode(load('save'))), ['old', false])
    assert.deepEqual(JSON.parse(runNode(load('read'))), ['old', true], 'its own cache is used')
    writeFileSync(bundle, script('new'))
    assert.deepEqual(JSON.parse(runNode(load('read'))), ['new', false])
    // A file not written by the build names no bundle: the cache beside it is never used.
    writeFileSync(bundle, script('old').split('\n').slice(1).join('\n'))
    assert.deepEqual(JSON.parse(runNode(load('read'))), ['old', false])
  })

  it('leaves the built-ins it defers unloaded by status on a server without TLS', async () => {
    // A TLS connection through the deferred tls: test/cli/check-connection.test.ts, sslmode=require.
    const db = await servers.get(major)!.createDatabase()
    const directory = temporaryDirectory()
    const record = path.join(directory, 'builtins.txt')
    const recorder = path.join(directory, 'record-builtins.cjs')
    writeFileSync(recorder, `process.on('exit', () => require('node:fs').writeFileSync(${JSON.stringify(record)}, process.moduleLoadList.join('\\n')))`)
    // Run where no config file can be found: reading one is asynchronous (fs/promises).
    execFileSync(process.execPath, ['-r', recorder, path.join(ROOT, 'bin', 'run.js'), 'status', '--database-url', db.url], {cwd: directory, encoding: 'utf8'})
    const loaded = readFileSync(record, 'utf8').split('\n')
    assert.ok(loaded.includes('NativeModule net'), 'the list names the built-ins status loads')
    const deferred = ['tls', 'readline', 'child_process', 'fs/promises'].map((name) => `NativeModule ${name}`)
    assert.deepEqual(loaded.filter((entry) => deferred.includes(entry)), [])
  })

  it('leaves PGlite unloaded when the database is a server', async () => {
    const db = await servers.get(major)!.createDatabase()
    const importsOf = (databaseUrl: string) => {
      const record = path.join(temporaryDirectory(), 'imports.txt')
      writeFileSync(record, '')
      const env = {...process.env, RECORD_IMPORTS: record}
      execFileSync(process.execPath, ['--import', pathToFileURL(RECORD_IMPORTS).href, path.join(ROOT, 'bin', 'run.js'), 'status', '--database-url', databaseUrl], {
        env,
        encoding: 'utf8',
      })
      return readFileSync(record, 'utf8').split('\n').filter((specifier) => specifier.includes('@electric-sql/'))
    }
    assert.ok(importsOf(`pglite:${path.join(temporaryDirectory(), 'data')}`).length > 0, 'the hook records the embedded database when it is used')
    assert.deepEqual(importsOf(db.url), [])
  })

  it('reaches import() from the cached bundle: PGlite and a JavaScript config file', async () => {
    const dir = temporaryDirectory()
    writeFileSync(path.join(dir, 'tw-db.config.js'), `module.exports = {database: {url: 'pglite:${path.join(dir, 'data')}'}}\n`)
    const result = await runCli(['status'], {cwd: dir})
    assert.equal(result.code, 0, result.stderr)
    assert.match(result.stdout, /0 applied, 5 pending/)
  })

  it('answers --version without oclif exactly as oclif would, and --help from the bundle', async () => {
    const version = await runCli(['--version'])
    assert.equal(version.code, 0, version.stderr)
    const oclif = await Config.load(fileURLToPath(new URL('../../', import.meta.url)))
    assert.equal(version.stdout, `${oclif.userAgent}\n`)
    const help = await runCli(['status', '--help'])
    assert.equal(help.code, 0, help.stderr)
    assert.match(help.stdout, /--database-url/)
  })

  it('has command ids that sort the same by code unit as by localeCompare (the bundle\'s oclif sorts by code unit)', () => {
    const ids = Object.keys(JSON.parse(readFileSync(path.join(ROOT, 'oclif.manifest.json'), 'utf8')).commands)
    assert.equal(ids.length, 6)
    assert.deepEqual([...ids].sort(), [...ids].sort((a, b) => a.localeCompare(b)))
    const bundle = readFileSync(BUNDLE, 'latin1')
    assert.doesNotMatch(bundle, /\.sort\(\(a, (\w+)\) => a\.id\.localeCompare\(\1\.id\)\)/, 'the build replaced oclif\'s sort')
    assert.match(bundle, /\.sort\(\(a, (\w+)\) => a\.id < \1\.id \? -1 : a\.id > \1\.id \? 1 : 0\)/)
  })

  it('measures printable ASCII and "…" by their length, as string-width does (the bundle skips its emoji pattern for such text)', () => {
    const stringWidth = createRequire(import.meta.url)('string-width') as (text: string) => number
    const printable = [...Array.from({length: 0x7f - 0x20}, (_, i) => String.fromCharCode(0x20 + i)), '\u2026']
    for (const char of printable) assert.equal(stringWidth(char), 1, JSON.stringify(char))
    assert.equal(stringWidth(printable.join('')), printable.length)
    const bundle = readFileSync(BUNDLE, 'latin1')
    assert.match(bundle, /=> typeof (\w+) === "string" && \/\^\[\\x20-\\x7e\\u2026\]\*\$\/\.test\(\1\) \? \1\.length : stringWidth\(\1\)/)
  })
})
