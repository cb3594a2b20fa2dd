"""`python -m medallion` runs the CLI."""

from medallion.cli import main

main()
