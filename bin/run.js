#!/usr/bin/env node
// `tw-db --version` alone is answered without loading oclif, in oclif's own
// format (Config#userAgent, which says wsl instead of linux under WSL): it
// runs in every CI log and should cost no more than node itself.
// test/cli/bundle.test.ts compares the two.
const args = process.argv.slice(2)
if (args.length === 1 && args[0] === '--version') {
  const {readFileSync} = await import('node:fs')
  const {name, version} = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
  const arch = process.arch === 'ia32' ? 'x86' : process.arch
  process.stdout.write(`${name}/${version} ${process.platform}-${arch} node-${process.version}\n`)
} else {
  const {loadBundle} = await import('./load-cli.js')
  await loadBundle().exports.execute({dir: import.meta.url})
}
