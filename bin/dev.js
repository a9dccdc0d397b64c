#!/usr/bin/env node
// Runs the TypeScript sources directly (no build step), for development only:
// oclif takes the commands from src/cli.ts instead of the bundle.
import {readFileSync} from 'node:fs'
import {register} from 'tsx/esm/api'
import {execute} from '@oclif/core'

register()
const pjson = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'))
pjson.oclif.commands = {...pjson.oclif.commands, target: './src/cli.ts'}
await execute({development: true, dir: import.meta.url, loadOptions: {root: new URL('..', import.meta.url).pathname, pjson}})
