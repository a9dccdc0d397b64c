import {existsSync} from 'node:fs'
import {stat} from 'node:fs/promises'
import {userInfo} from 'node:os'
import path from 'node:path'

import {EXIT, TwDbError, configError} from './errors.js'
import {formatConnection, registerSecret} from './redact.js'

export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const
export type SslMode = (typeof SSL_MODES)[number]

/** Where the database settings came from, shown by check-connection and in errors. */
export type ConfigSource = 'flag' | 'env' | 'file' | 'libpq' | 'default'

/** Where the embedded database keeps its data when nothing else is configured (SPEC.md section 7). */
export const DEFAULT_EMBEDDED_DIR = path.join('.tw-db', 'pglite')

export interface ConnectionConfig {
  readonly host: string
  readonly port: number
  readonly user: string
  readonly password?: string
  readonly database: string
  /** Set when `host` is a unix socket directory. */
  readonly socketPath?: string
  readonly ssl: SslMode
  readonly sslRootCert?: string
  readonly connectTimeout: number
  readonly maxConnections: number
  readonly source: ConfigSource
  /** e.g. `--database-url`, `DATABASE_URL`, `/srv/tw/config.yaml (meta.postgres_url)` */
  readonly sourceDetail: string
  /** The redacted URL: the only form in which a connection is ever shown. */
  readonly display: string
  /** Set for the embedded database (`pglite:` URLs); host and port are then known only once it runs. */
  readonly embedded?: {readonly dataDir: string}
}

export interface Config {
  readonly connection: ConnectionConfig
  readonly migrations: {readonly lockTimeout: number; readonly statementLockTimeout: number}
  readonly tools: {readonly pgBinDir?: string}
  readonly file?: string
  readonly warnings: readonly string[]
  /** Informational lines for stderr, such as which database was chosen by default. */
  readonly notices: readonly string[]
}

/** What the command line may override. */
export interface ConfigOverrides {
  databaseUrl?: string
  configPath?: string
  maxConnections?: number
  lockTimeout?: number
}

export const DEFAULTS = {
  port: 5432,
  host: 'localhost',
  maxConnections: 7,
  connectTimeout: 10,
  ssl: 'prefer' as SslMode,
  lockTimeout: 60,
  statementLockTimeout: 10,
}

const TEMPLATE_WORKER_FILE = 'config.yaml'
const SEARCH_PLACES = [
  TEMPLATE_WORKER_FILE,
  'tw-db.config.yaml',
  'tw-db.config.yml',
  'tw-db.config.json',
  'tw-db.config.js',
  '.tw-dbrc',
  '.tw-dbrc.yaml',
  '.tw-dbrc.yml',
  '.tw-dbrc.json',
  '.tw-dbrc.js',
  'package.json',
]
/**
 * Files that end cosmiconfig's 'project' walk up the directories, or (in the
 * working directory) hold its meta config, which may add search places.
 */
const COSMICONFIG_MARKERS = ['package.json', 'package.yaml', '.config']

/** Keys tw-db reads, per section; anything else in these sections is a likely typo. */
const KNOWN_KEYS: Record<string, readonly string[]> = {
  database: ['url', 'max_connections', 'connect_timeout', 'ssl', 'ssl_root_cert'],
  migrations: ['lock_timeout', 'statement_lock_timeout'],
  tools: ['pg_bin_dir'],
}
const TOP_LEVEL_KEYS = ['meta', ...Object.keys(KNOWN_KEYS)]

type Env = Record<string, string | undefined>

interface ConfigFile {
  filepath: string
  data: Record<string, unknown>
  /** false for Template Worker's own config.yaml, whose other keys are not ours. */
  twDbOnly: boolean
}

/**
 * Resolves the configuration (SPEC.md section 2): flags, then environment,
 * then the config file, then libpq variables. Every problem found is reported
 * together in one error.
 */
export async function loadConfig(overrides: ConfigOverrides = {}, env: Env = process.env, cwd = process.cwd()): Promise<Config> {
  const file = await findConfigFile(overrides.configPath, cwd)
  const problems: string[] = []
  const warnings: string[] = []
  const fileValues = file ? readFileValues(file, env, problems, warnings) : {}
  if (file) await warnIfSecretFileIsOpen(file.filepath, fileValues, warnings)

  const maxConnections = pickNumber(
    [
      ['--max-connections', overrides.maxConnections],
      ['MAX_DB_CONNECTIONS', env.MAX_DB_CONNECTIONS],
      ['database.max_connections', fileValues.maxConnections],
    ],
    {integer: true, min: 1},
    problems,
  ) ?? DEFAULTS.maxConnections
  const lockTimeout = pickNumber(
    [
      ['--lock-timeout', overrides.lockTimeout],
      ['migrations.lock_timeout', fileValues.lockTimeout],
    ],
    {min: 0},
    problems,
  ) ?? DEFAULTS.lockTimeout

  let connection: ConnectionConfig | undefined
  const url = pickUrl(overrides, env, file, fileValues)
  const common = {
    maxConnections,
    connectTimeout: fileValues.connectTimeout ?? DEFAULTS.connectTimeout,
    ssl: fileValues.ssl,
    sslRootCert: fileValues.sslRootCert,
  }
  if (url) {
    try {
      connection = connectionFromUrl(url.value, {...common, source: url.source, sourceDetail: url.detail}, env)
    } catch (error) {
      problems.push(`${url.detail}: ${(error as Error).message}`)
    }
  } else if (env.PGHOST || env.PGDATABASE) {
    try {
      connection = connectionFromLibpqEnv(env, common)
    } catch (error) {
      problems.push(`PG* environment: ${(error as Error).message}`)
    }
  }

  if (problems.length > 0) {
    const where = file ? ` in ${file.filepath}` : ''
    throw configError(
      problems.length === 1 ? `invalid configuration${where}: ${problems[0]}` : `invalid configuration${where}:\n  - ${problems.join('\n  - ')}`,
      `Fix ${problems.length === 1 ? 'that value' : 'the values above'}; config.yaml.example lists every key with its type.`,
    )
  }
  const notices: string[] = []
  if (!connection) {
    if (isTruthy(env.CI)) throw noDatabaseConfigured()
    connection = embeddedConnection(DEFAULT_EMBEDDED_DIR, 'default', 'nothing configured')
    notices.push(
      `Using the embedded database in ${DEFAULT_EMBEDDED_DIR} (no server configured). ` +
        'To use a server, pass --database-url postgres://USER@HOST:5432/DB or set DATABASE_URL.',
    )
  }

  return Object.freeze({
    connection: Object.freeze(connection),
    migrations: Object.freeze({lockTimeout, statementLockTimeout: fileValues.statementLockTimeout ?? DEFAULTS.statementLockTimeout}),
    tools: Object.freeze({pgBinDir: fileValues.pgBinDir ?? env.PG_BIN_DIR}),
    file: file?.filepath,
    warnings: Object.freeze(warnings),
    notices: Object.freeze(notices),
  })
}

function noDatabaseConfigured(): TwDbError {
  return new TwDbError('E_NO_DATABASE', 'no database configured', {
    exit: EXIT.USAGE,
    hint: 'CI is set, so the embedded database is not used. Pass --database-url postgres://user:password@host:5432/db, set DATABASE_URL, put meta.postgres_url (or database.url) in config.yaml, set PGHOST/PGDATABASE, or ask for the embedded database with --database-url pglite:.',
  })
}

/** How CI systems say "true": any value but empty, 0, false, no or off. */
function isTruthy(value: string | undefined): boolean {
  return value !== undefined && !['', '0', 'false', 'no', 'off'].includes(value.trim().toLowerCase())
}

// ---------------------------------------------------------------- the file

async function findConfigFile(configPath: string | undefined, cwd: string): Promise<ConfigFile | undefined> {
  if (!configPath && !mayFindConfigFile(cwd)) return undefined
  // cosmiconfig is CommonJS: a bundle chunk exports only `default` (module.exports).
  const loaded = (await import('cosmiconfig')) as typeof import('cosmiconfig') & {default?: typeof import('cosmiconfig')}
  const {cosmiconfig} = loaded.default ?? loaded
  const explorer = cosmiconfig('tw-db', {
    searchPlaces: SEARCH_PLACES,
    searchStrategy: 'project',
    loaders: {'.yaml': loadYaml, '.yml': loadYaml, noExt: loadYaml},
    cache: false,
  })
  let result
  try {
    result = configPath ? await explorer.load(path.resolve(cwd, configPath)) : await explorer.search(cwd)
  } catch (error) {
    if (error instanceof TwDbError) throw error
    const e = error as NodeJS.ErrnoException
    if (configPath && (e.code === 'ENOENT' || e.code === 'EISDIR')) {
      throw configError(`config file not found: ${configPath}`, 'Check the --config path.')
    }
    throw configError(`cannot read config file ${configPath ?? ''}: ${e.message}`.replace('  ', ' '))
  }
  if (!result || result.isEmpty || result.config === null || result.config === undefined) {
    return result ? {filepath: result.filepath, data: {}, twDbOnly: isTwDbOnly(result.filepath)} : undefined
  }
  if (typeof result.config !== 'object' || Array.isArray(result.config)) {
    throw configError(`${result.filepath}: the top level must be a mapping of keys`)
  }
  return {filepath: result.filepath, data: result.config as Record<string, unknown>, twDbOnly: isTwDbOnly(result.filepath)}
}

/**
 * Whether cosmiconfig's search from `cwd` could find anything: a search place
 * or a file that ends or configures its walk, in `cwd` or a directory above
 * (or in the process's working directory, where it looks for its meta config).
 * Importing cosmiconfig costs more than the rest of the configuration, and
 * most runs (a URL from the environment, no file) have none of these. Checked
 * synchronously: a few dozen existsSync calls take a fraction of a millisecond,
 * where the same checks through the thread pool kept every command waiting
 * several.
 */
function mayFindConfigFile(cwd: string): boolean {
  const names = [...new Set([...SEARCH_PLACES, ...COSMICONFIG_MARKERS])]
  const dirs = [path.resolve(cwd), process.cwd()]
  for (let dir = path.resolve(cwd); path.dirname(dir) !== dir; ) {
    dir = path.dirname(dir)
    dirs.push(dir)
  }
  return [...new Set(dirs)].some((dir) => names.some((name) => existsSync(path.join(dir, name))))
}

function isTwDbOnly(filepath: string): boolean {
  return path.basename(filepath) !== TEMPLATE_WORKER_FILE
}

// Parsed YAML documents by path, kept so that a bad value can be reported with its line.
const yamlDocuments = new Map<string, {doc: import('yaml').Document; lineCounter: import('yaml').LineCounter}>()

async function loadYaml(filepath: string, content: string): Promise<unknown> {
  // yaml is CommonJS: read it through `default` (module.exports), all a bundle chunk exports.
  const YAML = (await import('yaml')).default
  const lineCounter = new YAML.LineCounter()
  const doc = YAML.parseDocument(content, {lineCounter, prettyErrors: false})
  yamlDocuments.set(filepath, {doc, lineCounter})
  const firstError = doc.errors[0]
  if (firstError) {
    const {line, col} = lineCounter.linePos(firstError.pos[0])
    const reason = firstError.message.split('\n')[0].replace(/ at line \d+, column \d+:?$/, '')
    throw configError(`invalid YAML in ${filepath}:${line}:${col}: ${reason}`, 'Fix the YAML syntax at that line.')
  }
  return doc.toJS()
}

interface FileValues {
  /** `raw` is the value as written, before ${VAR} expansion. */
  url?: {value: string; key: string; raw: string}
  maxConnections?: number
  connectTimeout?: number
  ssl?: SslMode
  sslRootCert?: string
  lockTimeout?: number
  statementLockTimeout?: number
  pgBinDir?: string
}

function readFileValues(file: ConfigFile, env: Env, problems: string[], warnings: string[]): FileValues {
  const {data} = file
  const values: FileValues = {}
  const fail = (key: string, what: string) => problems.push(`${key} ${what}${lineHint(file, key)}`)

  if (file.twDbOnly) {
    for (const key of Object.keys(data)) {
      if (!TOP_LEVEL_KEYS.includes(key)) warnings.push(`unknown key "${key}" in ${file.filepath}${lineHint(file, key)}`)
    }
  }

  const section = (name: string): Record<string, unknown> | undefined => {
    const value = data[name]
    if (value === undefined || value === null) return undefined
    if (typeof value !== 'object' || Array.isArray(value)) {
      fail(name, 'must be a mapping of keys')
      return undefined
    }
    return value as Record<string, unknown>
  }

  const [meta, database, migrations, tools] = ['meta', 'database', 'migrations', 'tools'].map(section)
  for (const [name, sectionValues] of [['database', database], ['migrations', migrations], ['tools', tools]] as const) {
    for (const key of Object.keys(sectionValues ?? {})) {
      if (!KNOWN_KEYS[name].includes(key)) warnings.push(`unknown key "${name}.${key}" in ${file.filepath}${lineHint(file, `${name}.${key}`)}`)
    }
  }

  const str = (obj: Record<string, unknown> | undefined, key: string, fullKey: string): string | undefined => {
    const value = obj?.[key]
    if (value === undefined || value === null) return undefined
    if (typeof value !== 'string') {
      fail(fullKey, `must be a string, got ${describeType(value)}`)
      return undefined
    }
    const expanded = expandEnv(value, env)
    if (typeof expanded !== 'string') {
      fail(fullKey, `uses \${${expanded.missing}}, which is not set in the environment`)
      return undefined
    }
    return expanded
  }
  const num = (obj: Record<string, unknown> | undefined, key: string, fullKey: string, rule: NumberRule): number | undefined => {
    const raw = obj?.[key]
    if (raw === undefined || raw === null) return undefined
    const value = typeof raw === 'string' ? str(obj, key, fullKey) : raw
    if (value === undefined) return undefined
    const parsed = parseNumber(value, rule)
    if (parsed === undefined) fail(fullKey, `must be ${describeRule(rule)}, got ${JSON.stringify(raw)}`)
    return parsed
  }

  const databaseUrl = str(database, 'url', 'database.url')
  const metaUrl = str(meta, 'postgres_url', 'meta.postgres_url')
  if (databaseUrl !== undefined) values.url = {value: databaseUrl, key: 'database.url', raw: String(database!.url)}
  else if (metaUrl !== undefined) values.url = {value: metaUrl, key: 'meta.postgres_url', raw: String(meta!.postgres_url)}

  values.maxConnections = num(database, 'max_connections', 'database.max_connections', {integer: true, min: 1})
  values.connectTimeout = num(database, 'connect_timeout', 'database.connect_timeout', {min: 1})
  const ssl = str(database, 'ssl', 'database.ssl')
  if (ssl !== undefined) {
    if ((SSL_MODES as readonly string[]).includes(ssl)) values.ssl = ssl as SslMode
    else fail('database.ssl', `must be one of ${SSL_MODES.join(', ')}, got ${JSON.stringify(ssl)}`)
  }
  const sslRootCert = str(database, 'ssl_root_cert', 'database.ssl_root_cert')
  if (sslRootCert !== undefined) values.sslRootCert = path.resolve(path.dirname(file.filepath), sslRootCert)
  values.lockTimeout = num(migrations, 'lock_timeout', 'migrations.lock_timeout', {min: 0})
  values.statementLockTimeout = num(migrations, 'statement_lock_timeout', 'migrations.statement_lock_timeout', {min: 0})
  const pgBinDir = str(tools, 'pg_bin_dir', 'tools.pg_bin_dir')
  if (pgBinDir !== undefined) values.pgBinDir = path.resolve(path.dirname(file.filepath), pgBinDir)
  return values
}

/** " (line N)" for a dotted key of a YAML file (the document kept by loadYaml). */
function lineHint(file: ConfigFile, dottedKey: string): string {
  const parsed = yamlDocuments.get(file.filepath)
  if (!parsed) return ''
  const keys = dottedKey.split('.')
  const parent = keys.length === 1 ? parsed.doc.contents : parsed.doc.getIn(keys.slice(0, -1), true)
  const items = (parent as {items?: Array<{key?: {value?: unknown; range?: [number, number, number]}}>} | null)?.items
  const pair = items?.find((item) => item.key?.value === keys.at(-1))
  if (!pair?.key?.range) return ''
  return ` (line ${parsed.lineCounter.linePos(pair.key.range[0]).line})`
}

async function warnIfSecretFileIsOpen(filepath: string, values: FileValues, warnings: string[]): Promise<void> {
  // A password given as ${VAR} is not in the file, so the file's mode does not matter.
  const password = values.url && /:\/\/[^/@:]*:(\S*)@/.exec(values.url.raw)?.[1]
  if (!password || /^\$\{[A-Za-z_][A-Za-z0-9_]*\}$/.test(password)) return
  try {
    const {mode} = await stat(filepath)
    if ((mode & 0o077) !== 0) {
      warnings.push(`${filepath} holds a database password and is readable by others (mode ${(mode & 0o777).toString(8)}); run chmod 600 ${filepath}`)
    }
  } catch {
    // The file was just read; if it vanished since, there is nothing to warn about.
  }
}

// ---------------------------------------------------------------- values

type Expanded = string | {missing: string}

/** `${VAR}` from the environment; `$${` stays a literal `${`. */
export function expandEnv(value: string, env: Env): Expanded {
  let missing: string | undefined
  const result = value.replace(/\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (whole, escaped: string | undefined, name: string) => {
    if (escaped) return whole.slice(1)
    const v = env[name]
    if (v === undefined) {
      missing ??= name
      return whole
    }
    return v
  })
  return missing === undefined ? result : {missing}
}

interface NumberRule {
  integer?: boolean
  min?: number
}

function parseNumber(value: unknown, rule: NumberRule): number | undefined {
  const n = typeof value === 'number' ? value : typeof value === 'string' && value.trim() !== '' ? Number(value) : Number.NaN
  if (!Number.isFinite(n)) return undefined
  if (rule.integer && !Number.isInteger(n)) return undefined
  if (rule.min !== undefined && n < rule.min) return undefined
  return n
}

function describeRule(rule: NumberRule): string {
  const kind = rule.integer ? 'a whole number' : 'a number'
  return rule.min === undefined ? kind : `${kind} >= ${rule.min}`
}

function describeType(value: unknown): string {
  if (Array.isArray(value)) return 'a list'
  if (value === null) return 'null'
  return typeof value === 'object' ? 'a mapping' : `${typeof value} ${JSON.stringify(value)}`
}

function pickNumber(candidates: Array<[string, unknown]>, rule: NumberRule, problems: string[]): number | undefined {
  for (const [name, value] of candidates) {
    if (value === undefined || value === '') continue
    const parsed = parseNumber(value, rule)
    if (parsed === undefined) {
      problems.push(`${name} must be ${describeRule(rule)}, got ${JSON.stringify(value)}`)
      return undefined
    }
    return parsed
  }
  return undefined
}

function pickUrl(
  overrides: ConfigOverrides,
  env: Env,
  file: ConfigFile | undefined,
  values: FileValues,
): {value: string; source: ConfigSource; detail: string} | undefined {
  if (overrides.databaseUrl !== undefined) return {value: overrides.databaseUrl, source: 'flag', detail: '--database-url'}
  if (env.DATABASE_URL) return {value: env.DATABASE_URL, source: 'env', detail: 'DATABASE_URL'}
  if (file && values.url) return {value: values.url.value, source: 'file', detail: `${file.filepath} (${values.url.key})`}
  return undefined
}

// ---------------------------------------------------------------- URLs

interface ConnectionDefaults {
  maxConnections: number
  connectTimeout: number
  ssl?: SslMode
  sslRootCert?: string
  source: ConfigSource
  sourceDetail: string
}

function defaultUser(env: Env): string {
  if (env.PGUSER) return env.PGUSER
  try {
    return userInfo().username
  } catch {
    return 'postgres'
  }
}

function decodeLenient(text: string): string {
  try {
    return decodeURIComponent(text)
  } catch {
    // A password such as "p%ss" was written without percent-encoding: take it as typed.
    return text
  }
}

/**
 * Parses a libpq-style URL (`postgres://` or `postgresql://`). Written by hand
 * rather than with WHATWG URL so that passwords holding `@`, `:`, `/`-free
 * `%` or `#` still work whether or not the user percent-encoded them.
 */
export function connectionFromUrl(url: string, defaults: ConnectionDefaults, env: Env = {}): ConnectionConfig {
  const embedded = /^pglite:(?:\/\/)?/i.exec(url)
  if (embedded) return embeddedConnection(url.slice(embedded[0].length) || DEFAULT_EMBEDDED_DIR, defaults.source, defaults.sourceDetail)
  const scheme = /^(postgres|postgresql):\/\//i.exec(url)
  if (!scheme) {
    throw new Error(
      url === ''
        ? 'is empty (expected postgres://user:password@host:5432/database or pglite:PATH)'
        : `not a PostgreSQL URL (expected postgres://user:password@host:5432/database or pglite:PATH, got "${url.split(':')[0]}:…")`,
    )
  }
  let rest = url.slice(scheme[0].length)

  let query = ''
  const queryAt = rest.lastIndexOf('?')
  if (queryAt !== -1 && !rest.slice(queryAt).includes('@')) {
    query = rest.slice(queryAt + 1)
    rest = rest.slice(0, queryAt)
  }

  let user: string | undefined
  let password: string | undefined
  const at = rest.lastIndexOf('@')
  if (at !== -1) {
    const userinfo = rest.slice(0, at)
    rest = rest.slice(at + 1)
    const colon = userinfo.indexOf(':')
    user = decodeLenient(colon === -1 ? userinfo : userinfo.slice(0, colon))
    if (colon !== -1) password = decodeLenient(userinfo.slice(colon + 1))
  }

  const slash = rest.indexOf('/')
  const hostport = slash === -1 ? rest : rest.slice(0, slash)
  const databasePart = slash === -1 ? '' : rest.slice(slash + 1)

  let host = ''
  let portText = ''
  const bracketed = /^\[([^\]]+)\](?::(.*))?$/.exec(hostport)
  if (bracketed) {
    host = bracketed[1]
    portText = bracketed[2] ?? ''
  } else {
    const colon = hostport.lastIndexOf(':')
    host = colon === -1 ? hostport : hostport.slice(0, colon)
    portText = colon === -1 ? '' : hostport.slice(colon + 1)
  }
  host = decodeLenient(host)

  const params = new URLSearchParams(query)
  const param = (name: string) => params.get(name) ?? undefined
  host = param('host') ?? (host || (env.PGHOST ?? DEFAULTS.host))
  portText = param('port') ?? (portText || (env.PGPORT ?? ''))
  user = param('user') ?? (user || defaultUser(env))
  password = param('password') ?? password ?? env.PGPASSWORD
  const database = param('dbname') ?? (decodeLenient(databasePart) || env.PGDATABASE || user)

  // Without "user@", `postgres://user:password/db` reads the password as the port: never echo it then.
  if (at === -1 && portText !== '' && !/^\d+$/.test(portText) && param('port') === undefined) {
    throw new Error('invalid port in the URL: what follows "host:" is not a number (if it is a password, the URL lacks "@host")')
  }
  const port = portText === '' ? DEFAULTS.port : parsePort(portText, 'the URL')
  if (host.includes('/') && !host.startsWith('/')) throw new Error(`invalid host "${host}" in the URL`)
  const urlSslMode = parseSslMode(param('sslmode'), 'the URL')
  const envSslMode = parseSslMode(env.PGSSLMODE, 'PGSSLMODE')
  const connectTimeoutParam = param('connect_timeout')
  const connectTimeout = connectTimeoutParam === undefined ? defaults.connectTimeout : Number(connectTimeoutParam)
  if (!Number.isFinite(connectTimeout) || connectTimeout <= 0) throw new Error(`invalid connect_timeout "${connectTimeoutParam}" in the URL`)

  return buildConnection({
    host,
    port,
    user,
    password,
    database,
    ssl: urlSslMode ?? defaults.ssl ?? envSslMode ?? DEFAULTS.ssl,
    sslRootCert: param('sslrootcert') ?? defaults.sslRootCert,
    connectTimeout,
    maxConnections: defaults.maxConnections,
    source: defaults.source,
    sourceDetail: defaults.sourceDetail,
  })
}

/** `pglite:` or `pglite:PATH`: the embedded database, one connection, no password, no TLS. */
function embeddedConnection(dataDir: string, source: ConfigSource, sourceDetail: string): ConnectionConfig {
  return {
    host: '127.0.0.1',
    port: 0,
    user: 'postgres',
    database: 'postgres',
    ssl: 'disable',
    connectTimeout: DEFAULTS.connectTimeout,
    maxConnections: 1,
    source,
    sourceDetail,
    display: `pglite:${dataDir}`,
    embedded: {dataDir},
  }
}

function connectionFromLibpqEnv(env: Env, defaults: Omit<ConnectionDefaults, 'source' | 'sourceDetail'>): ConnectionConfig {
  const user = defaultUser(env)
  return buildConnection({
    host: env.PGHOST || DEFAULTS.host,
    port: env.PGPORT ? parsePort(env.PGPORT, 'PGPORT') : DEFAULTS.port,
    user,
    password: env.PGPASSWORD,
    database: env.PGDATABASE || user,
    ssl: parseSslMode(env.PGSSLMODE, 'PGSSLMODE') ?? defaults.ssl ?? DEFAULTS.ssl,
    sslRootCert: env.PGSSLROOTCERT ?? defaults.sslRootCert,
    connectTimeout: defaults.connectTimeout,
    maxConnections: defaults.maxConnections,
    source: 'libpq',
    sourceDetail: 'PGHOST/PGDATABASE environment',
  })
}

function parsePort(text: string, where: string): number {
  const port = Number(text)
  if (!/^\d+$/.test(text) || port < 1 || port > 65535) throw new Error(`invalid port "${text}" in ${where}`)
  return port
}

function parseSslMode(mode: string | undefined, where: string): SslMode | undefined {
  if (mode === undefined || mode === '') return undefined
  if (!(SSL_MODES as readonly string[]).includes(mode)) throw new Error(`invalid sslmode "${mode}" in ${where} (use one of ${SSL_MODES.join(', ')})`)
  return mode as SslMode
}

function buildConnection(fields: Omit<ConnectionConfig, 'display' | 'socketPath'>): ConnectionConfig {
  registerSecret(fields.password)
  const socketPath = fields.host.startsWith('/') ? fields.host : undefined
  const connection = {...fields, socketPath}
  return {...connection, display: formatConnection(connection)}
}
