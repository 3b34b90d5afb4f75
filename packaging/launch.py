"""Entry point of the packaged build: the same `studio` command as the installed package."""

import multiprocessing
import sys

if __name__ == "__main__":
    multiprocessing.freeze_support()
    from studio.cli import main

    sys.exit(main())
