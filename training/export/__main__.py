"""`python -m training.export`."""

import sys

from training.export.cli import main

if __name__ == "__main__":
    sys.exit(main())
