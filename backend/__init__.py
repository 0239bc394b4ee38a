"""The Confide HTTP service: the only package that knows HTTP and PostgreSQL."""
