import sys

from most.cli import main

sys.exit(main())
