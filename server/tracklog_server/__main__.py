from __future__ import annotations

from tracklog_server import main

raise SystemExit(main())
