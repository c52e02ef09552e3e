"""Bulk import and export with DuckDB and Parquet."""
