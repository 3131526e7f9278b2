"""MAGE supervision: graph walks, forget/neighbor QA synthesis, data-quality suites."""
