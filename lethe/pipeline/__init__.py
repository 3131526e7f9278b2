"""The Prefect side of Lethe: one task per pipeline step (`tasks`), the flows that chain them (`flows`).

Thin wrappers over lethe's plain functions (the MAGE steps, lethe.ops' request steps): retries,
caching, artifacts and the run's observability live here, the method does not.
"""
