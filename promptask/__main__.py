"""``python -m promptask`` runs the command line."""

import sys

from promptask.cli import main

sys.exit(main())
