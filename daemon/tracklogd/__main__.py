from __future__ import annotations

import sys

from tracklogd._process import main

sys.exit(main())
