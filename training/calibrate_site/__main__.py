"""`python -m training.calibrate_site`."""

import sys

from training.calibrate_site.cli import main

if __name__ == "__main__":
    sys.exit(main())
