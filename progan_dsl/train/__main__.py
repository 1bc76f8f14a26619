"""`python -m progan_dsl.train ...` is `progan-train ...` (what `torchrun -m` launches)."""

import sys

from progan_dsl.cli import train_main

sys.exit(train_main())
