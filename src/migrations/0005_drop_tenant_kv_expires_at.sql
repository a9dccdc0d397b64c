-- description: Drop tenant_kv.expires_at
ALTER TABLE tenant_kv DROP COLUMN IF EXISTS expires_at;
