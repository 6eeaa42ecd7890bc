"""`python -m devstack` from the repository root: what `make dev` runs."""

import sys

from devstack.demo import main

sys.exit(main())
