"""usage_daily counts unpriced answers too, so days whose events were pruned (`event_retention_days`) still
report them; existing days are filled in from the events still there.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"

UPGRADE = """
ALTER TABLE usage_daily ADD COLUMN unpriced BIGINT NOT NULL DEFAULT 0;
UPDATE usage_daily d SET unpriced = e.n
FROM (SELECT day, key_id, coalesce(owner, '') AS owner, coalesce(provider, '') AS provider,
             coalesce(upstream_model, '') AS upstream_model, count(*) AS n
      FROM usage_events WHERE NOT priced GROUP BY 1, 2, 3, 4, 5) e
WHERE (d.day, d.key_id, d.owner, d.provider, d.upstream_model) = (e.day, e.key_id, e.owner, e.provider, e.upstream_model)
"""

DOWNGRADE = """
ALTER TABLE usage_daily DROP COLUMN unpriced
"""


def upgrade() -> None:
    for statement in UPGRADE.split(";\n"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    for statement in DOWNGRADE.split(";\n"):
        if statement.strip():
            op.execute(statement)
