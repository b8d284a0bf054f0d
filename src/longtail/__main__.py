# Lets `python -m longtail` and `torchrun -m longtail` reach the same CLI as the console script.
from longtail.cli import main

raise SystemExit(main())
