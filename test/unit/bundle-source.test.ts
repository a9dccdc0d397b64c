/** The rewrites scripts/bundle.mjs makes to the bundle's source, on code that exercises each case. */
import assert from 'node:assert/strict'
import {isAscii} from 'node:buffer'
import {describe, it} from 'node:test'

import {escapeNonAscii, renameImportCalls, rewriteBuiltinRequires} from '../../scripts/bundle-source.mjs'

/** What a CommonJS snippet exports, as JSON. */
function exportsOf(code: string): string {
  const module = {exports: {}}
  new Function('module', 'load', code)(module, (specifier: string) => `loaded ${specifier}`)
  return JSON.stringify(module.exports)
}

describe('renameImportCalls', () => {
  it('renames import() calls, not the word in strings, comments or names', () => {
    const code = `// import("x") in a comment\nconst message = 'import() failed'; const importer = 1;\nmodule.exports = {a: import("pkg"), b: import(\`\${'p'}kg\`), message, importer}`
    const renamed = renameImportCalls(code, 'load')
    assert.equal(renamed.match(/load\(/g)?.length, 2)
    assert.equal(exportsOf(renamed), JSON.stringify({a: 'loaded pkg', b: 'loaded pkg', message: 'import() failed', importer: 1}))
    assert.ok(renamed.includes('// import("x") in a comment'))
  })
})

describe('rewriteBuiltinRequires', () => {
  const code = [
    'var __toESM = (mod) => ({default: mod, ...mod});',
    'var tls = __toESM(require("tls"), 1);',
    'var readline = require("node:readline");',
    'var fs = __toESM(require("node:fs"), 1);',
    'var path = require("node:path");',
    'var local = __toESM(require("./local"));',
    'var word = \'require("tls")\';',
    'module.exports = {tls, readline, fs, path, local, word};',
  ].join('\n')
  const rewritten = rewriteBuiltinRequires(code, {deferred: ['tls', 'readline'], defer: 'defer', namespace: 'namespace'})

  it('defers the listed built-ins, gives other built-ins a namespace, and leaves the rest', () => {
    assert.ok(rewritten.includes('var tls = defer("tls", true);'), rewritten)
    assert.ok(rewritten.includes('var readline = defer("node:readline", false);'), rewritten)
    assert.ok(rewritten.includes('var fs = namespace(require("node:fs"));'), rewritten)
    assert.ok(rewritten.includes('var path = require("node:path");'))
    assert.ok(rewritten.includes('var local = __toESM(require("./local"));'))
    assert.ok(rewritten.includes("var word = 'require(\"tls\")';"))
  })

  it('reads every property as before', () => {
    const run = (source: string) => {
      const module = {exports: {} as Record<string, unknown>}
      const load = (id: string) => ({id: id.replace(/^node:/, '')})
      const defer = (id: string, isNamespace: boolean) => new Proxy({}, {get: (_, key) => (isNamespace && key === 'default' ? load(id) : load(id)[key as 'id'])})
      const namespace = (builtin: object) => Object.create(builtin, {default: {value: builtin, enumerable: true}})
      new Function('module', 'require', 'defer', 'namespace', source)(module, load, defer, namespace)
      const {tls, readline, fs, path, local, word} = module.exports as Record<string, {id: string; default: {id: string}}> & {word: string}
      return [tls.default.id, tls.id, readline.id, fs.default.id, fs.id, path.id, local.default.id, local.id, word]
    }
    assert.deepEqual(run(rewritten), run(code))
    assert.deepEqual(run(code), ['tls', 'tls', 'readline', 'fs', 'fs', 'path', './local', './local', 'require("tls")'])
  })
})

describe('escapeNonAscii', () => {
  it('keeps what strings, regular expressions and names mean, in ASCII only', () => {
    const code = [
      '/** a JSDoc comment with “quotes” */',
      'const text = "é and 😀"; // a comment with “quotes”',
      'const pattern = /[\\u001b\u009b]é/g;',
      'const ñame = 2;',
      'const spaced\u00a0= 3;',
      'module.exports = {text, matches: "\\u001bé \u009bé".match(pattern), ñame, spaced}',
    ].join('\n')
    const escaped = escapeNonAscii(code)
    assert.ok(isAscii(Buffer.from(escaped)), escaped)
    assert.ok(!isAscii(Buffer.from(code)))
    assert.equal(exportsOf(escaped), exportsOf(code))
    assert.equal(JSON.parse(exportsOf(escaped)).matches.length, 2)
  })

  it('refuses a character in a template literal, where String.raw would see the escape', () => {
    assert.throws(() => escapeNonAscii('const t = `é`'), /line 1, column 12: no ASCII form for "é"/)
  })

  it('leaves ASCII code as it is', () => {
    const code = 'const a = "plain"; // comment\nmodule.exports = a'
    assert.equal(escapeNonAscii(code), code)
  })
})
