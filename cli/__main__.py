"""``python3 -m cli ARGS`` = ``mmd ARGS``."""

from cli.main import main

raise SystemExit(main())
