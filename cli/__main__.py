"""`python -m cli ...`: the same command line as `goodbooks ...`."""

from cli import app

app()
