"""migctl: cut a PostgreSQL payment service over to AWS without losing a row."""

__version__ = "0.1.0"
