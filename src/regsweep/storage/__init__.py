"""Optuna storage: URLs, database engines, locks, and the one module on Optuna's private API."""
