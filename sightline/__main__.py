"""``python -m sightline`` runs the command line."""

import sys

from sightline.cli import main

sys.exit(main())
