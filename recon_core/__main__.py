"""`python -m recon_core`: the command line."""

import sys

from recon_core.cli import main

sys.exit(main())
