import {readFileSync} from 'node:fs'

/** tw-db's version, from package.json (two levels above this module in both src/ and dist/). */
export const TOOL_VERSION: string = (
  JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {version: string}
).version

/** What tw-db writes to the ledger's applied_by column. */
export const APPLIED_BY = `tw-db ${TOOL_VERSION}`
