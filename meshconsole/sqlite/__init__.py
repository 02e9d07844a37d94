"""Django's SQLite backend with read-only transactions that take no write lock
(see meshconsole.db.read_transaction)."""
