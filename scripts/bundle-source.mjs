// Rewrites of the bundle's source that esbuild does not offer, made on the
// parsed code (TypeScript's parser) so that text in strings and comments is
// never mistaken for code. Used by scripts/bundle.mjs; test/unit/bundle-source.test.ts.
import {isBuiltin} from 'node:module'

import ts from 'typescript'

function parse(code) {
  return ts.createSourceFile('bundle.js', code, ts.ScriptTarget.Latest, true, ts.ScriptKind.JS)
}

/**
 * Rewrites how the bundle takes node's built-in modules. `require("X")` of a
 * built-in in `deferred` (with or without the node: prefix), with esbuild's
 * `__toESM(…)` around it if there is one, becomes `defer("X", isNamespace)`:
 * isNamespace is true where the code reads X as an ES namespace (its
 * `default` is the module itself). `__toESM(require("Y"), …)` for any other
 * built-in Y becomes `namespace(require("Y"))`. Names are those of functions
 * the bundle defines (scripts/bundle.mjs).
 */
export function rewriteBuiltinRequires(code, {deferred, defer, namespace}) {
  const tree = parse(code)
  const replacements = []
  const isCallOf = (node, callee) => ts.isCallExpression(node) && ts.isIdentifier(node.expression) && node.expression.text === callee
  const visit = (node) => {
    const [specifier] = isCallOf(node, 'require') ? node.arguments : []
    if (specifier && ts.isStringLiteral(specifier) && isBuiltin(specifier.text)) {
      const isNamespace = isCallOf(node.parent, '__toESM') && node.parent.arguments[0] === node
      const replaced = isNamespace ? node.parent : node
      const replacement = deferred.includes(specifier.text.replace(/^node:/, ''))
        ? `${defer}(${JSON.stringify(specifier.text)}, ${isNamespace})`
        : isNamespace ? `${namespace}(${node.getText(tree)})` : undefined
      if (replacement) replacements.push({start: replaced.getStart(tree), end: replaced.getEnd(), replacement})
      return
    }
    ts.forEachChild(node, visit)
  }
  visit(tree)
  return splice(code, replacements)
}

/** `import(…)` calls become `name(…)`. */
export function renameImportCalls(code, name) {
  const tree = parse(code)
  const starts = []
  const visit = (node) => {
    if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) starts.push(node.expression.getStart(tree))
    ts.forEachChild(node, visit)
  }
  visit(tree)
  return splice(code, starts.map((start) => ({start, end: start + 'import'.length, replacement: name})))
}

/** `code` with each {start, end} range (not overlapping) replaced. */
function splice(code, replacements) {
  let result = code
  for (const {start, end, replacement} of [...replacements].sort((a, b) => b.start - a.start)) result = result.slice(0, start) + replacement + result.slice(end)
  return result
}

/** `\\uXXXX` for each UTF-16 unit: the same string in a string literal or a regular expression, with or without the u flag. */
const unicodeEscape = (text) => Array.from({length: text.length}, (_, index) => `\\u${text.charCodeAt(index).toString(16).padStart(4, '0')}`).join('')

const isJsDoc = (node) => node.kind >= ts.SyntaxKind.FirstJSDocNode && node.kind <= ts.SyntaxKind.LastJSDocNode

/**
 * The same program in ASCII only: escapes in strings, regular expressions and
 * names (a regular expression matches the same; only its .source shows the
 * escape); in comments and whitespace, an ASCII stand-in. Throws on a
 * character in a template literal, where an escape would change String.raw.
 */
export function escapeNonAscii(code) {
  const tree = parse(code)
  const replacements = []
  for (const match of code.matchAll(/[^\x00-\x7f]/gu)) {
    const [character] = match
    const token = tokenAt(tree, match.index)
    let replacement
    if (match.index < token.getStart(tree) || isJsDoc(token)) {
      // Leading trivia: whitespace, a line break, or a comment's text.
      replacement = /[\u2028\u2029]/.test(character) ? '\n' : /\s/u.test(character) ? ' ' : '?'
    } else if (ts.isIdentifier(token) || ts.isPrivateIdentifier(token)) {
      replacement = `\\u{${character.codePointAt(0).toString(16)}}`
    } else if (ts.isStringLiteral(token) || token.kind === ts.SyntaxKind.RegularExpressionLiteral) {
      replacement = unicodeEscape(character)
    } else {
      const {line, character: column} = tree.getLineAndCharacterOfPosition(match.index)
      throw new Error(`bundle line ${line + 1}, column ${column + 1}: no ASCII form for "${character}" in a ${ts.SyntaxKind[token.kind]}`)
    }
    replacements.push({start: match.index, end: match.index + character.length, replacement})
  }
  return splice(code, replacements)
}

/** The token whose text or leading trivia holds `position`, or the JSDoc comment that does. */
function tokenAt(tree, position) {
  let node = tree
  for (;;) {
    const child = isJsDoc(node) ? undefined : node.getChildren(tree).find((candidate) => candidate.pos <= position && position < candidate.end)
    if (!child) return node
    node = child
  }
}
