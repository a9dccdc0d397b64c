#!/usr/bin/env node
// Runs the TypeScript sources directly (no build step), for development only.
import {register} from 'tsx/esm/api'
import {execute} from '@oclif/core'

register()
await execute({development: true, dir: import.meta.url})
