// Saves V8's compiled code for dist/bundle/cli.cjs after running the commands
// users run most, so that bin/run.js starts without compiling them
// (bin/load-cli.js). A last build step: the bundle must not change afterwards.
//
// The commands run in this process, as `tw-db migrate` then `tw-db status`
// would, on an embedded database in a temporary directory: every code path
// still goes through oclif, postgres.js and the wire protocol, and no server
// is needed at install time. V8 saves what those runs compiled; anything else
// is compiled when first used, as without a cache. Starting PGlite collects
// garbage often enough for V8 to drop the bytecode of the functions that ran
// before it (oclif's start): bytecode flushing is off while the commands run,
// and back on before the cache is made, since V8 rejects a cache made under
// other flags. If a run fails, no cache is
// written and the CLI works as before, only slower to start: a warning, not a
// failed install.
import {mkdtempSync, renameSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'
import {fileURLToPath} from 'node:url'
import v8 from 'node:v8'

import {BUNDLE, codeCacheFor, codeCachePath, loadBundle} from '../bin/load-cli.js'

const TRAINING = [['migrate'], ['status']]
// bin/run.js passes oclif the package's root, where its package.json is.
const ROOT = fileURLToPath(new URL('..', import.meta.url))

const {exports: cli, script, id} = loadBundle()
const work = mkdtempSync(path.join(tmpdir(), 'tw-db-code-cache-'))
const failure = await train(cli, `pglite:${path.join(work, 'pglite')}`).finally(() => rmSync(work, {recursive: true, force: true}))
if (failure) {
  process.stderr.write(`warning: no code cache written, so tw-db will start slower: ${failure}\n`)
  process.exitCode = 0
} else {
  const cache = codeCachePath(BUNDLE)
  writeFileSync(`${cache}.tmp`, codeCacheFor(script, id))
  renameSync(`${cache}.tmp`, cache)
}

/** Runs the training commands with their output held back; returns what went wrong, if anything. */
async function train(cli, databaseUrl) {
  const {write: writeStdout} = process.stdout
  const {write: writeStderr} = process.stderr
  let output = ''
  process.stdout.write = process.stderr.write = (chunk) => {
    output += chunk
    return true
  }
  v8.setFlagsFromString('--no-flush-bytecode')
  try {
    for (const args of TRAINING) {
      await cli.execute({args: [...args, '--database-url', databaseUrl], dir: ROOT})
      if (process.exitCode) return `tw-db ${args.join(' ')} exited with ${process.exitCode}: ${output}`
    }
    return undefined
  } catch (error) {
    return `${error.message} ${output}`
  } finally {
    v8.setFlagsFromString('--flush-bytecode')
    process.stdout.write = writeStdout
    process.stderr.write = writeStderr
  }
}
