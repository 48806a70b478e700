"""Leaving the machine: promotion to S3-compatible storage (promote.py), MLflow run records (tracking.py)."""
