"""Alembic environment: runs on the connection handed over by caracal.db.migrate."""

from alembic import context

from caracal.db.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `caracal migrate`, which holds the migration lock")

# target_metadata lets `alembic revision --autogenerate` draft a migration from the table modules;
# the migrations stay the schema's source, and test_tables_match_database proves the two agree
context.configure(connection=connection, target_metadata=metadata, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
