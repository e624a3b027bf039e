import sys

from qlangevin.cli import main

sys.exit(main())
