"""`python -m training.prepare_data`."""

import sys

from training.prepare_data.cli import main

if __name__ == "__main__":
    sys.exit(main())
