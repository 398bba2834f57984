import sys

from fakelab.cli import main

sys.exit(main())
