// The entry point bin/run.js loads. The build bundles it with the commands
// (scripts/bundle.mjs), so oclif and the commands load from a few shared
// chunks instead of hundreds of files, and only through this subpath:
// @oclif/core's root index would load all of oclif.
export {execute} from '@oclif/core/execute'
