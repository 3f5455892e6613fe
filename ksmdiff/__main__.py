"""``python -m ksmdiff``: the same command line as the ``ksmdiff`` script."""

import sys

from ksmdiff.cli import main

sys.exit(main())
