"""The embedded SQLite backend of the store (WAL, one group-committing writer).

``store`` (the backend itself), ``writer`` (the one writer thread hop per
transaction), ``ops`` (the write statements), ``queries`` (the reads),
``schema`` (tables and migrations).
"""
