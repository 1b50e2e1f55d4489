"""``python -m collectors.gpu`` is the ``gpu-collector`` console script."""

import sys

from collectors.gpu.cli import main

sys.exit(main())
