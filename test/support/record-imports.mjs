// Preloaded with `node --import`: appends every specifier the ES module loader
// resolves to the file named by RECORD_IMPORTS, one per line. The same file is
// the hooks module node runs on its loader thread.
import {appendFileSync} from 'node:fs'
import {register} from 'node:module'
import {isMainThread} from 'node:worker_threads'

if (isMainThread) register(import.meta.url)

export async function resolve(specifier, context, nextResolve) {
  appendFileSync(process.env.RECORD_IMPORTS, `${specifier}\n`)
  return nextResolve(specifier, context)
}
