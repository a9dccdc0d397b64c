-- description: Rename guild_templates_kv to tenant_kv and key it by (owner_id, owner_type)
ALTER TABLE guild_templates_kv RENAME TO tenant_kv;
ALTER TABLE tenant_kv DROP CONSTRAINT kv_unique_entry;
ALTER TABLE tenant_kv ADD COLUMN owner_type TEXT NOT NULL DEFAULT 'guild';
ALTER TABLE tenant_kv RENAME COLUMN guild_id TO owner_id;
ALTER TABLE tenant_kv ALTER COLUMN owner_id DROP DEFAULT;
ALTER TABLE tenant_kv ADD CONSTRAINT kv_unique_entry UNIQUE (owner_id, owner_type, key, scopes);
