"""Metric sources: each answers from an in-memory snapshot (see adapter.core.ports.Source)."""
