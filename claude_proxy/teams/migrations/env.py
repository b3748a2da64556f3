"""Alembic environment: online under a PostgreSQL advisory lock (two instances migrating at once
apply each revision exactly once), offline (`--sql`) printing the DDL without connecting."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, text

LOCK_ID = 0x6370_7465_616D  # "cpteam": one lock id for claude-proxy's migrations

config = context.config
url = config.get_main_option("sqlalchemy.url")

if context.is_offline_mode():
    context.configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()
else:
    engine = create_engine(url)
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": LOCK_ID})
        connection.commit()
        try:
            context.configure(connection=connection)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": LOCK_ID})
            connection.commit()
    engine.dispose()
