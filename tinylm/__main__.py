"""`python -m tinylm ...` (also the entry point for `torchrun -m tinylm ...`)."""

import sys

from tinylm.cli import main

sys.exit(main())
