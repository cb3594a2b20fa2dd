"""Gold: the star schema (SCD2 dimensions, the date dimension) as pure Arrow-to-Arrow functions."""
