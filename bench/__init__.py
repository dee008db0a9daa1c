"""Benchmark harness of voyo-trio: ``python -m bench`` runs every scenario."""
