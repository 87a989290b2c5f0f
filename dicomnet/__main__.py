"""``python -m dicomnet``: the ``dicomnet`` command line."""
import sys

from dicomnet.cli import main

if __name__ == "__main__":
    sys.exit(main())
