/**
 * Resetting a database: drop every non-system schema and recreate `public`
 * with the owner, grants and default privileges it had. The script is built
 * (purely) from a catalog snapshot so that `reset` runs it through postgres.js
 * and `restore --clean` runs the very same text through psql, in the same
 * transaction as the restore.
 */
import type {ReservedSql, Sql} from './connection.js'
import {sessionSurvives} from './errors.js'

export interface SchemaGrant {
  /** null for PUBLIC */
  grantee: string | null
  privilege: string
  grantable: boolean
}

export interface DefaultPrivilege extends SchemaGrant {
  /** The role whose new objects get these privileges. */
  role: string
  /** pg_default_acl.defaclobjtype: r tables, S sequences, f functions, T types */
  objectType: string
}

export interface CatalogSnapshot {
  /** Non-system schemas other than public. */
  schemas: string[]
  /** null when public does not exist. */
  publicOwner: string | null
  /** null when public has the default ACL. */
  publicGrants: SchemaGrant[] | null
  publicDefaults: DefaultPrivilege[]
}

const OBJECT_TYPES: Record<string, string> = {r: 'TABLES', S: 'SEQUENCES', f: 'FUNCTIONS', T: 'TYPES'}
const PRIVILEGE = /^[A-Z ]+$/

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`
}

function grantee(name: string | null): string {
  return name === null ? 'PUBLIC' : quoteIdent(name)
}

/** Pure: the SQL that empties the database as described by the snapshot. */
export function resetScript(snapshot: CatalogSnapshot, currentUser: string): string {
  const statements: string[] = []
  for (const schema of snapshot.schemas) statements.push(`DROP SCHEMA ${quoteIdent(schema)} CASCADE;`)
  statements.push('DROP SCHEMA IF EXISTS public CASCADE;', `CREATE SCHEMA public AUTHORIZATION ${quoteIdent(snapshot.publicOwner ?? currentUser)};`)
  if (snapshot.publicGrants) {
    // An explicit ACL replaces the default one: start from nothing, then grant exactly what was there.
    statements.push(`REVOKE ALL ON SCHEMA public FROM PUBLIC;`)
    for (const g of snapshot.publicGrants) {
      if (!PRIVILEGE.test(g.privilege)) continue
      statements.push(`GRANT ${g.privilege} ON SCHEMA public TO ${grantee(g.grantee)}${g.grantable ? ' WITH GRANT OPTION' : ''};`)
    }
  }
  for (const d of snapshot.publicDefaults) {
    const objects = OBJECT_TYPES[d.objectType]
    if (!objects || !PRIVILEGE.test(d.privilege)) continue
    statements.push(
      `ALTER DEFAULT PRIVILEGES FOR ROLE ${quoteIdent(d.role)} IN SCHEMA public GRANT ${d.privilege} ON ${objects} TO ${grantee(d.grantee)}${d.grantable ? ' WITH GRANT OPTION' : ''};`,
    )
  }
  return statements.join('\n')
}

type Queryable = Sql | ReservedSql

export async function catalogSnapshot(sql: Queryable): Promise<{snapshot: CatalogSnapshot; currentUser: string}> {
  const [schemas, [publicRow], grants, defaults, [{user}]] = await Promise.all([
    sql<Array<{name: string}>>`
      select nspname as name from pg_namespace
      where nspname !~ '^pg_' and nspname not in ('information_schema', 'public')
      order by nspname`,
    sql<Array<{owner: string; aclNull: boolean}>>`
      select pg_get_userbyid(nspowner) as owner, nspacl is null as "aclNull" from pg_namespace where nspname = 'public'`,
    sql<Array<{grantee: string | null; privilege: string; grantable: boolean}>>`
      select case when a.grantee = 0 then null else pg_get_userbyid(a.grantee) end as grantee,
             a.privilege_type as privilege, a.is_grantable as grantable
      from pg_namespace n, aclexplode(n.nspacl) a where n.nspname = 'public'`,
    sql<Array<{role: string; objectType: string; grantee: string | null; privilege: string; grantable: boolean}>>`
      select pg_get_userbyid(d.defaclrole) as role, d.defaclobjtype as "objectType",
             case when a.grantee = 0 then null else pg_get_userbyid(a.grantee) end as grantee,
             a.privilege_type as privilege, a.is_grantable as grantable
      from pg_default_acl d join pg_namespace n on n.oid = d.defaclnamespace, aclexplode(d.defaclacl) a
      where n.nspname = 'public'`,
    sql<Array<{user: string}>>`select current_user as user`,
  ])
  return {
    snapshot: {
      schemas: schemas.map((s) => s.name),
      publicOwner: publicRow?.owner ?? null,
      publicGrants: !publicRow || publicRow.aclNull ? null : grants.map((g) => ({...g})),
      publicDefaults: defaults.map((d) => ({...d})),
    },
    currentUser: user,
  }
}

/** Empties the database in one transaction on the given (locked) session. */
export async function resetDatabase(reserved: ReservedSql): Promise<{droppedSchemas: string[]}> {
  await reserved`begin`
  try {
    const {snapshot, currentUser} = await catalogSnapshot(reserved)
    await reserved.unsafe(resetScript(snapshot, currentUser))
    await reserved`commit`
    return {droppedSchemas: [...snapshot.schemas, ...(snapshot.publicOwner ? ['public'] : [])]}
  } catch (error) {
    if (sessionSurvives(error)) await reserved`rollback`.catch(() => undefined)
    throw error
  }
}

/** Counts the user relations (tables, views, sequences…) outside the system schemas. */
export async function userRelationCount(sql: Queryable): Promise<number> {
  const [{count}] = await sql<Array<{count: number}>>`
    select count(*)::int as count from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname !~ '^pg_' and n.nspname <> 'information_schema'
      and c.relkind in ('r', 'p', 'v', 'm', 'S', 'f')`
  return count
}
