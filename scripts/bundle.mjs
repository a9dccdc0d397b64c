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
import {mkdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'

import {asScript} from '../bin/load-cli.js'
import {deferBuiltinRequires, escapeNonAscii, renameImportCalls} from './bundle-source.mjs'

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
  'const deferredBuiltin = (id, namespace) => {',
  '  let loaded;',
  "  return new Proxy({}, {get: (_, key) => ((loaded ??= require(id)), namespace && key === 'default' ? loaded : loaded[key])});",
  '};',
].join('\n')

// Built-ins that some dependencies require when the bundle starts, though
// only a few commands use them: postgres.js takes tls only for a TLS
// connection, oclif's parser readline only to read a flag's value from stdin.
// Loading them cost every command about 2.5 ms (bench/README.md), so the
// bundle loads each when a property of it is first read (deferredBuiltin
// above; test/cli/bundle.test.ts checks that status loads neither).
const DEFERRED_BUILTINS = ['tls', 'readline']

// oclif sorts its commands with localeCompare, and V8 loads ICU's collation
// data on the first call: 10 ms of every start (bench/README.md). Command ids
// are lowercase ASCII words and hyphens, which sort the same by code unit
// (test/cli/bundle.test.ts checks both). A build of a changed oclif fails
// here rather than silently keeping the slow sort.
const codeUnitSortOfCommands = {
  name: 'code-unit-sort-of-commands',
  setup(build) {
    build.onLoad({filter: /[\\/]@oclif[\\/]core[\\/]lib[\\/]config[\\/]plugin\.js$/}, ({path}) => {
      const localeSort = '.sort((a, b) => a.id.localeCompare(b.id))'
      const source = readFileSync(path, 'utf8')
      if (!source.includes(localeSort)) throw new Error(`${path} no longer sorts commands with "${localeSort}": review scripts/bundle.mjs`)
      return {contents: source.replace(localeSort, '.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))'), loader: 'js'}
    })
  },
}

// string-width runs emoji-regex's pattern (thousands of alternatives) over
// every string it measures, and V8 compiles that pattern on first use: 5 ms of
// `tw-db status`, whose table (cli-table3) measures every cell, and for each
// the mark it truncates with, "…" (U+2026). Printable ASCII and that mark
// hold no emoji and take one column a character, so such a string's width is
// its length (test/cli/bundle.test.ts checks string-width agrees); anything
// else, ANSI colours included, goes through string-width as before.
const asciiStringWidth = {
  name: 'ascii-string-width',
  setup(build) {
    build.onLoad({filter: /[\\/]node_modules[\\/]string-width[\\/]index\.js$/}, ({path}) => {
      const exported = 'module.exports = stringWidth;'
      const source = readFileSync(path, 'utf8')
      if (!source.includes(exported)) throw new Error(`${path} no longer ends with "${exported}": review scripts/bundle.mjs`)
      const fast = 'module.exports = (string) => (typeof string === "string" && /^[\\x20-\\x7e\\u2026]*$/.test(string) ? string.length : stringWidth(string));'
      return {contents: source.replace(exported, fast), loader: 'js'}
    })
  },
}

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
  plugins: [codeUnitSortOfCommands, asciiStringWidth],
  logLevel: 'warning',
})

mkdirSync('dist/bundle', {recursive: true})
// ASCII only, so that bin/load-cli.js reads it as Latin-1: decoding 1.4 MB of
// UTF-8 took 4 ms of every start. esbuild escapes strings but leaves comments
// and regular expressions as they are.
const code = deferBuiltinRequires(renameImportCalls(outputFiles[0].text, 'bundleImport'), DEFERRED_BUILTINS, 'deferredBuiltin')
writeFileSync(OUT, escapeNonAscii(asScript(`${BANNER}\n${code}`)))
