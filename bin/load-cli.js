// Loads the bundled CLI (dist/bundle/cli.cjs) with the compiled code the
// build saved for it (dist/bundle/cli.cjs.cache, scripts/code-cache.mjs).
//
// Compiling oclif, postgres.js and tw-db's own code was a third of
// `tw-db status`'s start-up (bench/README.md). Node 20 reuses V8's compiled
// code only for a vm.Script, hence a bundle run here rather than through
// require(). V8 checks only that the cache matches the source's length,
// node's version and its flags, so the bundle's first line names the SHA-256
// of its code, the cache file starts with the name of the bundle it was made
// from, and a cache is used only with that bundle. Reading the name instead
// of hashing 1.4 MB here keeps node:crypto (5 ms to load) off the start: the
// registry loads it later, while the server answers. Without a usable cache
// the bundle is compiled as usual: slower, never different.
// A script compiled from a cache cannot run import() on Node 20, so the
// bundle's import() calls (scripts/bundle.mjs) come here, to loaderImport.
const {readFileSync} = require('node:fs')
// The class of this very module: require('node:module') would also load the public module's extras (source maps), 0.4 ms.
const Module = module.constructor
const path = require('node:path')
const vm = require('node:vm')

const BUNDLE = path.join(__dirname, '..', 'dist', 'bundle', 'cli.cjs')

const ID_LINE = '// tw-db bundle '
const ID_LENGTH = 64 // hexadecimal SHA-256

/**
 * The bundle's code as the file holds it: a line naming the code (its
 * SHA-256), then the code wrapped in a function taking what node's CommonJS
 * wrapper passes, plus loaderImport. Run as a script (this is the global
 * object) the file's value is that function, and V8 compiles the file's text
 * as it is: wrapping it here would make V8 copy 1.4 MB into one string first,
 * 4 ms. Loaded with require() (oclif manifest at build time), it runs itself
 * as a CommonJS module. Only the build calls this.
 */
function asScript(code) {
  const id = require('node:crypto').createHash('sha256').update(code).digest('hex')
  return (
    `${ID_LINE}${id}\n` +
    '(this === globalThis ? (body) => body : (body) => body.call(exports, exports, require, module, __filename, __dirname))' +
    `(function (exports, require, module, __filename, __dirname, loaderImport) {\n${code}\n})`
  )
}

/** The name on the bundle's first line (asScript), or undefined for a file without one. */
function bundleId(source) {
  const id = source.subarray(ID_LINE.length, ID_LINE.length + ID_LENGTH)
  return source.subarray(0, ID_LINE.length).toString('latin1') === ID_LINE && id.length === ID_LENGTH ? id : undefined
}

function codeCachePath(bundle) {
  return `${bundle}.cache`
}

/** The cache file's contents for `script`, compiled from the bundle named `id`. */
function codeCacheFor(script, id) {
  return Buffer.concat([id, script.createCachedData()])
}

function readCodeCache(bundle, id) {
  if (id === undefined) return undefined
  let file
  try {
    file = readFileSync(codeCachePath(bundle))
  } catch {
    return undefined // none, or unreadable: the bundle is compiled as usual
  }
  return file.subarray(0, ID_LENGTH).equals(id) ? file.subarray(ID_LENGTH) : undefined
}

/**
 * Runs the bundle (asScript) as the CommonJS module it is. Returns its exports, the
 * script (to save a cache from), the bundle's id, and whether V8 took the cache.
 */
function loadBundle(bundle = BUNDLE) {
  const source = readFileSync(bundle)
  const id = bundleId(source)
  const cachedData = readCodeCache(bundle, id)
  // The build writes the bundle in ASCII only (scripts/bundle.mjs; test/cli/bundle.test.ts checks it), so Latin-1
  // reads it as it is, faster than UTF-8 and without checking every byte first.
  const script = new vm.Script(source.toString('latin1'), {filename: bundle, cachedData})
  const bundleModule = new Module(bundle)
  bundleModule.filename = bundle
  const bundleRequire = Module.createRequire(bundle)
  // oclif requires the bundle again for its commands (package.json oclif.commands): it gets this instance.
  bundleRequire.cache[bundle] = bundleModule
  const loaderImport = (specifier, options) => import(specifier, options)
  script.runInThisContext().call(bundleModule.exports, bundleModule.exports, bundleRequire, bundleModule, bundle, path.dirname(bundle), loaderImport)
  bundleModule.loaded = true
  return {exports: bundleModule.exports, script, id, cacheUsed: cachedData !== undefined && !script.cachedDataRejected}
}

module.exports = {BUNDLE, asScript, codeCachePath, codeCacheFor, loadBundle}
