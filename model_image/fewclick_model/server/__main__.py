"""`python -m fewclick_model.server serve`: the model container's entry point."""

import sys

from .cli import main

sys.exit(main())
