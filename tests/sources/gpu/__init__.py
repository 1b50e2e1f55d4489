"""Tests of the GPU source: discovery, pulling, the store and fetch."""
