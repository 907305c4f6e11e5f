"""One module per task family."""
