-- description: Drop the v7 template, shop and job tables and the kv expiry columns
DROP TABLE IF EXISTS guild_templates;
DROP TABLE IF EXISTS attached_templates;
DROP TABLE IF EXISTS template_shop_listings;
DROP TABLE IF EXISTS jobs;
DROP TABLE IF EXISTS ongoing_jobs;
ALTER TABLE tenant_kv DROP COLUMN IF EXISTS resume;
ALTER TABLE tenant_kv DROP COLUMN IF EXISTS expiry_event_call_attempts;
