export function renameImportCalls(code: string, name: string): string
export function escapeNonAscii(code: string): string
