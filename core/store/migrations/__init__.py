"""Alembic migrations of the vkit store (driven by :mod:`vkit.core.store.migrate`, no ``alembic.ini``)."""
