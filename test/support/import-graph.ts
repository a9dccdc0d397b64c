import {readFileSync} from 'node:fs'
import path from 'node:path'

// Static, non-type imports and re-exports, in tsc's style ('…') and esbuild's ("…", over several lines).
const STATIC_IMPORT = /^\s*(?:import|export)\s+(?!type\b)[^'"]*?from\s*['"]([^'"]+)['"]|^\s*import\s*['"]([^'"]+)['"]/gm

/**
 * Every module reachable from `entry` through static imports: local files and
 * packages. Relative `.js` specifiers resolve to `.ts` when walking sources.
 */
export function staticGraph(entry: string): {files: Set<string>; packages: Set<string>} {
  const extension = path.extname(entry)
  const files = new Set<string>()
  const packages = new Set<string>()
  const visit = (file: string) => {
    if (files.has(file)) return
    files.add(file)
    for (const match of readFileSync(file, 'utf8').matchAll(STATIC_IMPORT)) {
      const specifier = match[1] ?? match[2]
      if (specifier.startsWith('.')) visit(path.resolve(path.dirname(file), specifier.replace(/\.js$/, extension)))
      else packages.add(specifier)
    }
  }
  visit(entry)
  return {files, packages}
}
