"""Database access: the pool, migrations, the embedded cluster."""
