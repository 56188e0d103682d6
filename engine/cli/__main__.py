"""`python -m engine.cli ...` is `fkp ...`."""

import sys

from engine.cli import main

sys.exit(main())
