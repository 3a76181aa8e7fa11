"""`python -m training.publish`."""

import sys

from training.publish.push_to_hub import main

if __name__ == "__main__":
    sys.exit(main())
