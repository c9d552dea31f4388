"""The anomaly tracker: data anomalies filed, owned and resolved like bugs (the TFX paper's ask).

A record per (pipeline, feature, kind) in a SQL database through SQLAlchemy (SQLite file by
default, Postgres by URL), its schema kept by Alembic migrations. Runs in the Airflow environment
(the ML environment has no SQLAlchemy): the filing operator, the CLI and the UI page use it.
"""
