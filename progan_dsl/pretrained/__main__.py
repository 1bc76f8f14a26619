"""`python -m progan_dsl.pretrained NETWORK.pkl --out DIR` is `progan-import`."""

import sys

from progan_dsl.cli import import_main

sys.exit(import_main())
