"""Polar's database layer: SQLAlchemy models, async engine, upsert helper and migrations."""
