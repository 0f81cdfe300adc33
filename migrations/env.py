"""Alembic environment for forkpoint.

forkpoint's own ``migrate`` hands in a connection that already holds a
``BEGIN IMMEDIATE`` transaction, so every migration of one upgrade commits
together or not at all. Run from the shell (``alembic upgrade head`` at the
repo root, optionally ``-x db=PATH``) it opens the database the same way.

PostgreSQL databases are migrated by ``forkpoint.postgres``, which renders the
upgrade as SQL here (alembic's offline mode, ``dialect`` given in the config's
attributes) and runs that SQL itself, in one transaction under an advisory
lock and inside forkpoint's own schema.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from forkpoint.migrate import prepare_new_file, sqlalchemy_engine, stamp_application_id
from forkpoint.schema import metadata


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        transactional_ddl=True,
        render_as_batch=True,
    )
    stamp_application_id(connection)
    with context.begin_transaction():
        context.run_migrations()


def render(dialect: str) -> None:
    """Write the upgrade's SQL to the config's output buffer; the caller wraps the transaction."""
    context.configure(
        dialect_name=dialect,
        target_metadata=metadata,
        transactional_ddl=False,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


given = context.config.attributes.get("connection")
if context.is_offline_mode():
    render(context.config.attributes.get("dialect", "postgresql"))
elif given is not None:
    run(given)
else:
    url = context.config.get_main_option("sqlalchemy.url") or "sqlite:///forkpoint.db"
    path = context.get_x_argument(as_dictionary=True).get("db") or url.removeprefix("sqlite:///")
    prepare_new_file(path)
    engine = sqlalchemy_engine(path, busy_timeout=5.0)
    with engine.connect() as conn, conn.begin():
        run(conn)
    engine.dispose()
