export function renameImportCalls(code: string, name: string): string
export function rewriteBuiltinRequires(code: string, names: {deferred: readonly string[]; defer: string; namespace: string}): string
export function escapeNonAscii(code: string): string
