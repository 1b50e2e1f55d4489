"""Node agents that measure what the adapter serves. A separate program from ``adapter``."""
