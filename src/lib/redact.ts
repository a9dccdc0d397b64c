/**
 * The only place that turns connection details into text. Every message that
 * can reach a user (errors, warnings, JSON, logs) goes through `redact()`,
 * which hides the userinfo password of any URL and every password tw-db has
 * seen in this process.
 */

const knownSecrets = new Set<string>()

/** Remembers a password so that `redact()` hides it wherever it turns up. */
export function registerSecret(secret: string | undefined): void {
  if (!secret) return
  knownSecrets.add(secret)
  // The same password as it may appear inside a URL.
  knownSecrets.add(encodeURIComponent(secret))
}

// scheme://user:password@host — an unencoded password may hold '@', ':' or '/', so it runs to the
// last '@' of the word before any '?' or '#' (as the URL parser in config.ts reads it).
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s:/@]*):([^\s?#]*)@(?=[^\s@?#]*(?:[\s?#]|$))/gi

export function redact(text: string): string {
  let result = text.replace(URL_USERINFO, (_m, scheme: string, user: string) => `${scheme}${user}:***@`)
  // Longest first, so a secret that contains another is hidden whole.
  const secrets = [...knownSecrets].sort((a, b) => b.length - a.length)
  for (const secret of secrets) {
    if (secret.length < 3) continue
    result = result.split(secret).join('***')
  }
  return result
}

export interface DisplayableConnection {
  host: string
  port: number
  user: string
  database: string
  password?: string
  socketPath?: string
}

/** `postgres://user:***@host:5432/db`: the form every connection is shown in. */
export function formatConnection(c: DisplayableConnection): string {
  const auth = c.password ? `${encodeURIComponent(c.user)}:***@` : `${encodeURIComponent(c.user)}@`
  if (c.socketPath) {
    return `postgres://${auth}/${encodeURIComponent(c.database)}?host=${c.socketPath}&port=${c.port}`
  }
  const host = c.host.includes(':') ? `[${c.host}]` : c.host
  return `postgres://${auth}${host}:${c.port}/${encodeURIComponent(c.database)}`
}
