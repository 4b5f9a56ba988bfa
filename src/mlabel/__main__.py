import sys

from mlabel.cli import main

sys.exit(main())
