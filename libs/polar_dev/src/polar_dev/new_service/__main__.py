"""`python -m polar_dev.new_service NAME [--remove]`: see the package's docstring."""

import sys

from . import main

sys.exit(main())
