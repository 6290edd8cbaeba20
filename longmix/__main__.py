"""`python -m longmix`: the `longmix` command."""

import sys

from longmix.pipeline.cli import main

sys.exit(main())
