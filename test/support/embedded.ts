/** Reads an embedded (PGlite) database directly, after tw-db has stopped using it. */
import {PGlite} from '@electric-sql/pglite'

export async function queryEmbedded<T = Record<string, unknown>>(dataDir: string, query: string): Promise<T[]> {
  const db = await PGlite.create({dataDir})
  try {
    return (await db.query<T>(query)).rows
  } finally {
    await db.close()
  }
}
