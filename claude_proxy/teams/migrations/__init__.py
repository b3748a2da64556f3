"""Alembic migrations of the PostgreSQL ledger (run as a separate step: `claude-proxy store migrate`).

Raw SQL revisions, so neither the gunicorn master nor the workers import SQLAlchemy: workers only
compare `alembic_version` with `HEAD` (below, checked against the revisions by a test).
"""

HEAD = "0002"
