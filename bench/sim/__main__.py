import sys

from bench.sim.virtual_rig import main

sys.exit(main())
