"""``python -m workbench.devservices up|down|status`` (the same as ``workbench dev ...``)."""

import sys

from . import main

sys.exit(main())
