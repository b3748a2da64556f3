"""The SQLite schema, created on open (`IF NOT EXISTS`) and versioned in `PRAGMA user_version`.

Times are UTC epoch seconds (REAL); money is integer micro-USD; token counts are INTEGER (64-bit).
The audit table refuses UPDATE and DELETE by trigger: append-only is enforced by the store itself.
"""

from __future__ import annotations

VERSION = 2  # 2: usage_daily (event_retention_days); a version-1 file gains it in place

DDL = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta (name, value) VALUES ('epoch', '0');

CREATE TABLE IF NOT EXISTS teams (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  display_name TEXT,
  rpm INTEGER, rpm_period_s INTEGER, tpm INTEGER, tpm_period_s INTEGER,
  max_concurrent INTEGER, monthly_budget_micros INTEGER,
  created_at REAL NOT NULL, updated_at REAL NOT NULL, archived_at REAL
);

CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY,
  secret_hash BLOB NOT NULL UNIQUE,
  name TEXT NOT NULL,
  owner TEXT NOT NULL,
  team_id INTEGER REFERENCES teams(id),
  role TEXT NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
  gateway INTEGER NOT NULL DEFAULT 0,
  rpm INTEGER, rpm_period_s INTEGER, tpm INTEGER, tpm_period_s INTEGER,
  max_concurrent INTEGER, monthly_budget_micros INTEGER,
  created_at REAL NOT NULL, created_by TEXT, expires_at REAL,
  revoked_at REAL, revoked_by TEXT, revoke_reason TEXT,
  last_used_at REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS api_keys_team ON api_keys (team_id);

CREATE TABLE IF NOT EXISTS usage_events (
  usage_id TEXT PRIMARY KEY,
  request_id TEXT, ts REAL NOT NULL, day TEXT NOT NULL,
  key_id TEXT NOT NULL, team_id INTEGER, team TEXT, owner TEXT,
  endpoint TEXT, client_model TEXT, provider TEXT, upstream_model TEXT, stream INTEGER,
  status INTEGER, error_type TEXT,
  input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
  cache_read_tokens INTEGER NOT NULL, cache_write_tokens INTEGER NOT NULL,
  estimated INTEGER NOT NULL, cost_micros INTEGER, priced INTEGER NOT NULL, latency_ms REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS usage_ts ON usage_events (ts);
CREATE INDEX IF NOT EXISTS usage_key_ts ON usage_events (key_id, ts);
CREATE INDEX IF NOT EXISTS usage_team_ts ON usage_events (team_id, ts);

-- Whole-day totals of usage events pruned past event_retention_days (rolled up and deleted in one
-- transaction: a request is in exactly one of the two tables). Same columns as PostgreSQL's usage_daily.
CREATE TABLE IF NOT EXISTS usage_daily (
  day TEXT NOT NULL, key_id TEXT NOT NULL, owner TEXT NOT NULL, provider TEXT NOT NULL, upstream_model TEXT NOT NULL,
  team_id INTEGER,
  requests INTEGER NOT NULL, errors INTEGER NOT NULL, estimated INTEGER NOT NULL,
  input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
  cache_read_tokens INTEGER NOT NULL, cache_write_tokens INTEGER NOT NULL, cost_micros INTEGER NOT NULL,
  unpriced INTEGER NOT NULL,
  PRIMARY KEY (day, key_id, owner, provider, upstream_model)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS audit_events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  ts REAL NOT NULL, actor TEXT NOT NULL, actor_key_id TEXT,
  action TEXT NOT NULL, target_type TEXT, target_id TEXT,
  details TEXT, remote_addr TEXT, request_id TEXT
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit_events
  BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit_events
  BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;

-- tat: GCRA theoretical arrival time; step: the seconds per unit it was computed with (a limit change rescales)
CREATE TABLE IF NOT EXISTS rl_state (k TEXT PRIMARY KEY, tat REAL NOT NULL, step REAL NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rl_lease (
  scope TEXT NOT NULL, rid TEXT NOT NULL, expires REAL NOT NULL,
  reserve_tokens INTEGER NOT NULL DEFAULT 0, reserve_micros INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (scope, rid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS rl_lease_rid ON rl_lease (rid);
CREATE TABLE IF NOT EXISTS spend (
  scope TEXT NOT NULL, month TEXT NOT NULL, micros INTEGER NOT NULL,
  PRIMARY KEY (scope, month)
) WITHOUT ROWID;
"""
