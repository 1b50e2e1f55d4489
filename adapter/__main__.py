"""``python -m adapter`` is the ``inference-metrics-adapter`` command."""

from adapter.cli import main

raise SystemExit(main())
