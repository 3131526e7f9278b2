"""Evaluation: TOFU metrics, entity probes, membership inference, reports."""
