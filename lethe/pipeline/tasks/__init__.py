"""Prefect tasks: one module per pipeline step, thin wrappers over lethe/ (task name = module = stage)."""
