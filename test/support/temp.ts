/** Temporary directories for tests: each test file runs in its own process, which removes them as it exits. */
import {mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import path from 'node:path'

const created: string[] = []

function removeAll(): void {
  for (const dir of created) rmSync(dir, {recursive: true, force: true})
}

export function temporaryDirectory(prefix = 'tw-db-test-'): string {
  const dir = mkdtempSync(path.join(tmpdir(), prefix))
  if (created.push(dir) === 1) process.on('exit', removeAll)
  return dir
}
