"""Bronze: append-only raw history per source table, incremental from a watermark."""
