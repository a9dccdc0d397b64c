// The floor for `tw-db status`: node, postgres.js, one connection, one SELECT, a clean exit.
// Plain JavaScript, so that no TypeScript loader is timed. Usage: node one-select.mjs URL
import postgres from 'postgres'

const sql = postgres(process.argv[2], {max: 1})
await sql`select 1`
await sql.end()
