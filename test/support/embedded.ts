/** Reads an embedded (PGlite) database directly, after tw-db has stopped using it. */
import path from 'node:path'

import {PGlite} from '@electric-sql/pglite'

/** A PATH with node's directory only: no pg_dump, psql or pg_restore can be found through it. */
export const noClientTools = {PATH: path.dirname(process.execPath)}

export async function queryEmbedded<T = Record<string, unknown>>(dataDir: string, query: string): Promise<T[]> {
  const db = await PGlite.create({dataDir})
  try {
    return (await db.query<T>(query)).rows
  } finally {
    await db.close()
  }
}
