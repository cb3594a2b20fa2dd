"""The operational source database: schema, bulk loads, generator and change batches."""
