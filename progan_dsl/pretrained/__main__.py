"""`python -m progan_dsl.pretrained NETWORK.pkl --out DIR`: progan-import, with its exit codes."""

import sys

from progan_dsl.cli import _run
from progan_dsl.pretrained.cli import main

sys.exit(_run(main, sys.argv[1:]))
