"""Database access: engine, table definitions, migrations and driver-error translation."""
