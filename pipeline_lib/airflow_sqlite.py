"""Connections to Airflow's embedded SQLite metadata database. Under `make airflow` the scheduler,
the api-server (for the running tasks), the dag-processor, the triggerer and the `airflow` CLI all
write to that one file. Two ways a write fails there with `database is locked`:

- another writer holds the lock longer than sqlite3's default wait of 5 s: wait
  `settings.SQLITE_LOCK_WAIT_S` instead;
- the transaction read before it wrote, and another process committed in between. In WAL mode
  (Airflow's) SQLite fails that write at once (SQLITE_BUSY_SNAPSHOT): no wait helps. Seen from
  `airflow backfill create` while a backfill's runs ran. pysqlite starts a transaction at its
  first write, so only one that SQLAlchemy's `begin_nested()` opened with SAVEPOINT reads first
  (Airflow's backfill creation, asset events). Such a transaction begins IMMEDIATE here: it takes
  the write lock, waiting for it, before it reads.

Airflow takes these through its own `[database] sql_alchemy_connect_args` (and `_async`), which
the Makefile and the tests set; a Postgres deployment leaves them unset.
"""

import sqlite3

from pipeline_lib import settings


class _Cursor(sqlite3.Cursor):
    def execute(self, sql, parameters=(), /):
        if not self.connection.in_transaction and sql.lstrip()[:9].upper() == "SAVEPOINT":
            super().execute("BEGIN IMMEDIATE")
        return super().execute(sql, parameters)


class Connection(sqlite3.Connection):
    # SQLAlchemy runs every statement through cursor(); sqlite3's own execute() shortcut does not
    # come here, and nothing of Airflow's sends SAVEPOINT through it
    def cursor(self, factory=_Cursor):
        return super().cursor(factory)


CONNECT_ARGS = {"timeout": settings.SQLITE_LOCK_WAIT_S, "factory": Connection}
