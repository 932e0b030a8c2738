"""``python -m estimation.cli``: the ``levelfield`` command line."""

import sys

from estimation.cli import main

sys.exit(main())
