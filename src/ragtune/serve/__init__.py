"""ragtune serve: the HTTP face (FastAPI). It calls the same library functions as the CLI; nothing
below it imports it."""
