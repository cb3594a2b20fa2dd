"""Export Gold to warehouses (BigQuery, PostgreSQL, DuckDB): ``medallion export --to URL``.

One export path (:mod:`medallion.export.core`) behind a small :class:`Destination` interface;
each warehouse's own library does the talking (google-cloud-bigquery, SQLAlchemy/psycopg,
DuckDB), imported only when that destination is used.
"""
