"""``python -m driver`` == ``comfy-avatar``."""

import sys

from .cli import main

sys.exit(main())
