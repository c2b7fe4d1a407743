import sys

from benchmarks.race.main import main

sys.exit(main())
