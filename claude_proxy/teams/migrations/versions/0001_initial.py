"""The ledger: teams, keys (SHA-256 only), usage events and daily aggregates, month spend, audit, meta.

Times are epoch seconds (DOUBLE PRECISION), as in the SQLite store, so both backends hand out the same
records; money is integer micro-USD and every token count BIGINT. audit_events refuses UPDATE and
DELETE by trigger: append-only is enforced by the database itself.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None

UPGRADE = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta (name, value) VALUES ('epoch', '0');

CREATE TABLE teams (
  id BIGSERIAL PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  display_name TEXT,
  rpm BIGINT, rpm_period_s INTEGER, tpm BIGINT, tpm_period_s INTEGER,
  max_concurrent INTEGER, monthly_budget_micros BIGINT,
  created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL, archived_at DOUBLE PRECISION
);

CREATE TABLE api_keys (
  id TEXT PRIMARY KEY,
  secret_hash BYTEA NOT NULL UNIQUE,
  name TEXT NOT NULL,
  owner TEXT NOT NULL,
  team_id BIGINT REFERENCES teams(id),
  role TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
  gateway BOOLEAN NOT NULL DEFAULT false,
  rpm BIGINT, rpm_period_s INTEGER, tpm BIGINT, tpm_period_s INTEGER,
  max_concurrent INTEGER, monthly_budget_micros BIGINT,
  created_at DOUBLE PRECISION NOT NULL, created_by TEXT, expires_at DOUBLE PRECISION,
  revoked_at DOUBLE PRECISION, revoked_by TEXT, revoke_reason TEXT,
  last_used_at DOUBLE PRECISION
);
CREATE INDEX api_keys_team ON api_keys (team_id);

CREATE TABLE usage_events (
  usage_id TEXT PRIMARY KEY,
  request_id TEXT, ts DOUBLE PRECISION NOT NULL, day TEXT NOT NULL, instance TEXT,
  key_id TEXT NOT NULL, team_id BIGINT, team TEXT, owner TEXT,
  endpoint TEXT, client_model TEXT, provider TEXT, upstream_model TEXT, stream BOOLEAN,
  status INTEGER, error_type TEXT,
  input_tokens BIGINT NOT NULL, output_tokens BIGINT NOT NULL,
  cache_read_tokens BIGINT NOT NULL, cache_write_tokens BIGINT NOT NULL,
  estimated BOOLEAN NOT NULL, cost_micros BIGINT, priced BOOLEAN NOT NULL, latency_ms DOUBLE PRECISION
);
CREATE INDEX usage_ts ON usage_events (ts);
CREATE INDEX usage_key_ts ON usage_events (key_id, ts);
CREATE INDEX usage_team_ts ON usage_events (team_id, ts);

CREATE TABLE usage_daily (
  day TEXT NOT NULL, key_id TEXT NOT NULL, owner TEXT NOT NULL, provider TEXT NOT NULL, upstream_model TEXT NOT NULL,
  team_id BIGINT,
  requests BIGINT NOT NULL, errors BIGINT NOT NULL, estimated BIGINT NOT NULL,
  input_tokens BIGINT NOT NULL, output_tokens BIGINT NOT NULL,
  cache_read_tokens BIGINT NOT NULL, cache_write_tokens BIGINT NOT NULL, cost_micros BIGINT NOT NULL,
  PRIMARY KEY (day, key_id, owner, provider, upstream_model)
);
CREATE INDEX usage_daily_team ON usage_daily (team_id, day);

CREATE TABLE spend (scope TEXT NOT NULL, month TEXT NOT NULL, micros BIGINT NOT NULL, PRIMARY KEY (scope, month));

CREATE TABLE audit_events (
  id BIGSERIAL PRIMARY KEY,
  ts DOUBLE PRECISION NOT NULL, actor TEXT NOT NULL, actor_key_id TEXT,
  action TEXT NOT NULL, target_type TEXT, target_id TEXT,
  details JSONB, remote_addr TEXT, request_id TEXT
);
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit_events is append-only'; END $$;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_append_only();
"""

DOWNGRADE = """
DROP TABLE audit_events; DROP FUNCTION audit_append_only(); DROP TABLE spend; DROP TABLE usage_daily;
DROP TABLE usage_events; DROP TABLE api_keys; DROP TABLE teams; DROP TABLE meta;
"""


def upgrade() -> None:
    for statement in UPGRADE.split(";\n"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE.split(";"):
        if statement.strip():
            op.execute(statement)
