// Bundles what the CLI loads at start-up, after tsc has built dist/.
//
// Loading @oclif/core, postgres.js, cosmiconfig and tw-db's own modules as
// hundreds of separate files was most of `tw-db status`'s start-up time
// (bench/README.md). esbuild writes dist/cli.js and dist/commands/*.js over
// tsc's output, with their dependencies in shared chunks (dist/chunks/), so
// oclif and every command share one copy of each module. Dynamic imports stay
// lazy: each becomes its own chunk, loaded only when reached. PGlite is left
// to node_modules (large, WebAssembly, only for the embedded database);
// typescript is only ever reached by oclif's development mode.
// dist/index.js and dist/lib/ stay tsc's: the programmatic API is not bundled.
import {build} from 'esbuild'
import {readdirSync, rmSync} from 'node:fs'

const commands = readdirSync('src/commands')
  .filter((name) => name.endsWith('.ts'))
  .map((name) => `src/commands/${name}`)

// Chunk names carry content hashes: drop the previous build's.
rmSync('dist/chunks', {recursive: true, force: true})

await build({
  entryPoints: ['src/cli.ts', ...commands],
  outdir: 'dist',
  outbase: 'src',
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['@electric-sql/*', 'typescript'],
  // Bundled CommonJS code (oclif) still calls require() for package.json files and optional modules.
  banner: {js: "import {createRequire as createRequireForBundle} from 'node:module'; const require = createRequireForBundle(import.meta.url);"},
  logLevel: 'warning',
})
