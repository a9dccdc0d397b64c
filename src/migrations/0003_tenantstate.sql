-- description: Create tenant_state (events, ban flag and data per owner)
DROP TABLE IF EXISTS tenant_state;
CREATE TABLE tenant_state (
  owner_id TEXT NOT NULL,
  owner_type TEXT NOT NULL,
  events TEXT[] NOT NULL DEFAULT '{}'::text[],
  banned BOOLEAN NOT NULL DEFAULT FALSE,
  data JSONB NOT NULL DEFAULT '{}'::jsonb,
  PRIMARY KEY (owner_id, owner_type)
);
