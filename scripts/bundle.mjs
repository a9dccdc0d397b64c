// Bundles the CLI into one CommonJS file, dist/bundle/cli.cjs, after tsc has
// built dist/ (whose dist/index.js and dist/lib/ stay the programmatic API).
//
// Loading @oclif/core, postgres.js and tw-db's modules as hundreds of files,
// then compiling them, was most of `tw-db status`'s start-up time
// (bench/README.md). One file loads at once, and CommonJS because Node 20 can
// reuse compiled code only for a script (bin/load-cli.js,
// scripts/code-cache.mjs). Dynamic imports of bundled modules stay lazy:
// esbuild evaluates such a module only when its import() runs. PGlite stays in
// node_modules (large, WebAssembly, only for the embedded database);
// typescript is only ever reached by oclif's development mode.
import {build} from 'esbuild'
import {mkdirSync, rmSync, writeFileSync} from 'node:fs'
import ts from 'typescript'

const OUT = 'dist/bundle/cli.cjs'

// src/lib resolves package.json and src/migrations/ from import.meta.url; the
// bundle sits at the same depth below the package root as dist/lib/.
// A script compiled from V8's code cache on Node 20 loses what import() needs
// ("A dynamic import callback was not specified"): the import() calls left in
// the bundle (PGlite, a tw-db.config.js) go through the loader's own import()
// when it passes one (bin/load-cli.js), and are plain import() under require().
const BANNER = [
  "const bundleFileUrl = require('node:url').pathToFileURL(__filename).href;",
  "const bundleImport = typeof loaderImport === 'function' ? loaderImport : (specifier, options) => import(specifier, options);",
].join('\n')

// A code cache left from a previous bundle must never meet a new one.
rmSync('dist/bundle', {recursive: true, force: true})

const {outputFiles} = await build({
  entryPoints: ['src/cli.ts'],
  outfile: OUT,
  write: false,
  bundle: true,
  format: 'cjs',
  platform: 'node',
  target: 'node20',
  external: ['@electric-sql/*', 'typescript'],
  define: {'import.meta.url': 'bundleFileUrl'},
  logLevel: 'warning',
})

mkdirSync('dist/bundle', {recursive: true})
writeFileSync(OUT, `${BANNER}\n${renameImportCalls(outputFiles[0].text, 'bundleImport')}`)

/** `import(…)` calls become `name(…)`; found by parsing, so text in strings and comments stays as it is. */
function renameImportCalls(code, name) {
  const tree = ts.createSourceFile(OUT, code, ts.ScriptTarget.Latest, false, ts.ScriptKind.JS)
  const starts = []
  const visit = (node) => {
    if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) starts.push(node.expression.getStart(tree))
    ts.forEachChild(node, visit)
  }
  visit(tree)
  let renamed = code
  for (const start of starts.sort((a, b) => b - a)) renamed = renamed.slice(0, start) + name + renamed.slice(start + 'import'.length)
  return renamed
}
