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
import {escapeNonAscii, renameImportCalls, rewriteBuiltinRequires} from './bundle-source.mjs'

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
  'const deferredBuiltin = (id, isNamespace) => {',
  '  let loaded;',
  "  return new Proxy({}, {get: (_, key) => ((loaded ??= require(id)), isNamespace && key === 'default' ? loaded : loaded[key])});",
  '};',
  'const builtinNamespace = (builtin) => Object.create(builtin, {default: {value: builtin, enumerable: true}});',
].join('\n')

// How the bundle takes node's built-ins (rewriteBuiltinRequires; the
// functions are in BANNER above):
// - Some dependencies require built-ins when the bundle starts that only a few
//   commands use: postgres.js takes tls only for a TLS connection, oclif's
//   parser readline only to read a flag's value from stdin, child_process
//   and fs/promises serve the commands that run pg_dump or read files
//   asynchronously, crypto password authentication and the registry's
//   checksums (which status computes while the server answers its query),
//   zlib a gzip dump, dns/promises check-connection, readline/promises
//   reset's prompt.
//   Loading them cost every command about 10 ms (bench/README.md), so each
//   loads when a property of it is first read (deferredBuiltin;
//   test/cli/bundle.test.ts checks that status loads the first four not at
//   all).
// - esbuild's __toESM gives an ES import of a CommonJS module its own object
//   with a getter for every property: over a thousand for the built-ins the
//   bundle imports (fs alone four times), about 3 ms and 600 kB of every
//   start. A built-in's namespace inherits from the module instead
//   (builtinNamespace): every property reads the same; only enumerating the
//   namespace would differ, and nothing in the bundle does that
//   (test/cli/bundle.test.ts checks).
const DEFERRED_BUILTINS = ['tls', 'readline', 'child_process', 'fs/promises', 'crypto', 'zlib', 'dns/promises', 'readline/promises']

/**
 * An esbuild plugin that makes each patch's change ({name, file, from, to}:
 * `from` replaced with `to` in the dependency file whose path ends with
 * `file`). A changed or moved dependency fails the build here (or after it,
 * for a file never loaded) rather than silently losing the change.
 */
const appliedPatches = new Set()
function patchDependencies(patches) {
  const files = [...new Set(patches.map(({file}) => file))]
  const pattern = (file) => new RegExp(`[\\\\/]node_modules[\\\\/]${file.split('/').map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('[\\\\/]')}$`)
  return {
    name: 'dependency-patches',
    setup(build) {
      for (const file of files) {
        build.onLoad({filter: pattern(file)}, ({path}) => {
          let source = readFileSync(path, 'utf8')
          for (const {name, from, to} of patches.filter((patch) => patch.file === file)) {
            if (!source.includes(from)) throw new Error(`${path} no longer contains "${from}" (${name}): review scripts/bundle.mjs`)
            source = source.replace(from, to)
            appliedPatches.add(name)
          }
          return {contents: source, loader: 'js'}
        })
      }
    },
  }
}

// oclif sorts its commands with localeCompare, and V8 loads ICU's collation
// data on the first call: 10 ms of every start (bench/README.md). Command ids
// are lowercase ASCII words and hyphens, which sort the same by code unit
// (test/cli/bundle.test.ts checks both).
const codeUnitSortOfCommands = {
  name: 'code-unit-sort-of-commands',
  file: '@oclif/core/lib/config/plugin.js',
  from: '.sort((a, b) => a.id.localeCompare(b.id))',
  to: '.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))',
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
  file: 'string-width/index.js',
  from: 'module.exports = stringWidth;',
  to: 'module.exports = (string) => (typeof string === "string" && /^[\\x20-\\x7e\\u2026]*$/.test(string) ? string.length : stringWidth(string));',
}

// oclif reads its JSON files at start (package.json, its manifest, the
// user's theme.json and plugin list) one after another with fs/promises,
// each a trip through libuv's thread pool, the first also starting it: 5 ms
// of every command on this machine (bench/README.md). Read synchronously,
// the same files take a fraction of that; readJson still returns a promise
// and rejects with the same errors.
const syncOclifJsonReads = {
  name: 'sync-oclif-json-reads',
  file: '@oclif/core/lib/util/fs.js',
  from: "const contents = await (0, promises_1.readFile)(path, 'utf8');",
  to: "const contents = (0, node_fs_1.readFileSync)(path, 'utf8');",
}

/** A patch making `const variable = require("module");` in `file` require the module when one of `functions` is first called. */
function deferRequire(name, file, variable, module, functions) {
  const calls = functions.map((fn) => `${fn}: (...args) => require("${module}").${fn}(...args)`)
  return {name, file, from: `const ${variable} = require("${module}");`, to: `const ${variable} = {${calls.join(', ')}};`}
}

/** A patch making `const variable = __importDefault(require("module"));` in `file` require the module when its default is first read. */
function deferDefaultImport(name, file, variable, module) {
  return {
    name,
    file,
    from: `const ${variable} = __importDefault(require("${module}"));`,
    to: `const ${variable} = {get default() { return require("${module}"); }};`,
  }
}

// oclif loads a glob library (tinyglobby, with fdir and picomatch) to find
// command files by pattern, minimatch to match plugin names by wildcard, and
// lilconfig for a plugin whose package.json has no oclif section, when it
// starts; tw-db lists its commands (package.json oclif.commands, "explicit"),
// has an oclif section and no plugins. About 2 ms of every command
// (bench/README.md), and lilconfig reads fs.promises as it loads
// (DEFERRED_BUILTINS). Likewise the frame sets of oclif's spinner
// (cli-spinners, 48 kB of object literal) and its template engine (ejs, for
// help texts and update URLs), which status and migrate never use. Each is
// required on first use instead.
const lazyOclifDependencies = [
  deferRequire('lazy-command-glob', '@oclif/core/lib/config/plugin.js', 'tinyglobby_1', 'tinyglobby', ['glob']),
  deferRequire('lazy-plugin-match', '@oclif/core/lib/config/plugin-loader.js', 'minimatch_1', 'minimatch', ['minimatch']),
  deferRequire('lazy-plugin-config-search', '@oclif/core/lib/util/read-pjson.js', 'lilconfig_1', 'lilconfig', ['lilconfig']),
  deferDefaultImport('lazy-spinner-frames', '@oclif/core/lib/ux/action/spinner.js', 'cli_spinners_1', 'cli-spinners'),
  deferDefaultImport('lazy-templates', '@oclif/core/lib/config/config.js', 'ejs_1', 'ejs'),
  deferDefaultImport('lazy-help-templates', '@oclif/core/lib/help/util.js', 'ejs_1', 'ejs'),
]

// To tell Linux from WSL, oclif imports wsl-utils, whose isWsl is is-wsl's,
// and which also sets up PowerShell helpers that read child_process when
// they load. Importing is-wsl itself gives the same answer and lets
// child_process load only when a command runs a program (DEFERRED_BUILTINS).
const wslCheckWithoutPowerShell = {
  name: 'wsl-check-without-powershell',
  file: '@oclif/core/lib/util/os.js',
  from: "return (await import('wsl-utils')).isWsl ? 'wsl' : (0, node_os_1.platform)();",
  to: "return (await import('is-wsl')).default ? 'wsl' : (0, node_os_1.platform)();",
}
const DEPENDENCY_PATCHES = [codeUnitSortOfCommands, asciiStringWidth, syncOclifJsonReads, ...lazyOclifDependencies, wslCheckWithoutPowerShell]

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
  plugins: [patchDependencies(DEPENDENCY_PATCHES)],
  logLevel: 'warning',
})
for (const {name} of DEPENDENCY_PATCHES) {
  if (!appliedPatches.has(name)) throw new Error(`${name}: the file it patches was not bundled: review scripts/bundle.mjs`)
}

mkdirSync('dist/bundle', {recursive: true})
// ASCII only, so that bin/load-cli.js reads it as Latin-1: decoding 1.4 MB of
// UTF-8 took 4 ms of every start. esbuild escapes strings but leaves comments
// and regular expressions as they are.
const code = rewriteBuiltinRequires(renameImportCalls(outputFiles[0].text, 'bundleImport'), {
  deferred: DEFERRED_BUILTINS,
  defer: 'deferredBuiltin',
  namespace: 'builtinNamespace',
})
writeFileSync(OUT, asScript(escapeNonAscii(`${BANNER}\n${code}`)))
