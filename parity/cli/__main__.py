"""``python -m parity.cli``: the same entry point as the ``lora-parity`` script."""

import sys

from parity.cli import main

sys.exit(main())
