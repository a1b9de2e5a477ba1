"""`python -m dashboards [--check] [--out DIR]`: see generate.py."""

import sys

from .generate import main

sys.exit(main())
