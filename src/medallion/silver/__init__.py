"""Silver: typed, cleansed, de-duplicated current state with quarantine, MERGE and deletes."""
