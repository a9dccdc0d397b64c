// The entry point bin/run.js loads: the build bundles it, oclif and every
// command into one CommonJS file (scripts/bundle.mjs), which bin/load-cli.js
// compiles with the V8 code cache the build wrote for it. Only this subpath of
// oclif: @oclif/core's root index would load all of oclif.
import Backup from './commands/backup.js'
import CheckConnection from './commands/check-connection.js'
import Migrate from './commands/migrate.js'
import Reset from './commands/reset.js'
import Restore from './commands/restore.js'
import Status from './commands/status.js'
import {redactDebugOutput} from './lib/output.js'

export {execute} from '@oclif/core/execute'

if (process.env.DEBUG) redactDebugOutput()

/**
 * Where oclif finds the commands (package.json oclif.commands, the "explicit"
 * strategy): it requires the bundle again, gets the instance already loaded,
 * and so the commands share its one copy of oclif.
 */
export const COMMANDS = {
  backup: Backup,
  'check-connection': CheckConnection,
  migrate: Migrate,
  reset: Reset,
  restore: Restore,
  status: Status,
}
