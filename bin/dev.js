#!/usr/bin/env node
// Runs the TypeScript sources directly (no build step), for development only:
// oclif takes the commands from src/cli.ts instead of the bundle.
const {readFileSync} = require('node:fs')
const path = require('node:path')

const root = path.join(__dirname, '..')
void (async () => {
  const {register} = await import('tsx/esm/api')
  register()
  const {execute} = await import('@oclif/core')
  const pjson = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'))
  pjson.oclif.commands = {...pjson.oclif.commands, target: './src/cli.ts'}
  await execute({development: true, dir: root, loadOptions: {root, pjson}})
})()
