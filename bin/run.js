#!/usr/bin/env node
// CommonJS (bin/package.json): an ES module entry point makes node load its
// ES module loader first, about 18 internal modules, before any of tw-db runs.
//
// `tw-db --version` alone is answered without loading oclif, in oclif's own
// format (Config#userAgent, which says wsl instead of linux under WSL): it
// runs in every CI log and should cost no more than node itself.
// test/cli/bundle.test.ts compares the two.
const path = require('node:path')

const root = path.join(__dirname, '..')
const args = process.argv.slice(2)
if (args.length === 1 && args[0] === '--version') {
  const {name, version} = JSON.parse(require('node:fs').readFileSync(path.join(root, 'package.json'), 'utf8'))
  const arch = process.arch === 'ia32' ? 'x86' : process.arch
  process.stdout.write(`${name}/${version} ${process.platform}-${arch} node-${process.version}\n`)
} else {
  // oclif looks for package.json from here: the root's, not bin/'s.
  require('./load-cli.js').loadBundle().exports.execute({dir: root})
}
