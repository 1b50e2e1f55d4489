"""Tests of the metric sources."""
