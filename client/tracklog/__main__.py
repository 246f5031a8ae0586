"""``python -m tracklog`` is the ``tracklog`` command."""

from __future__ import annotations

import sys

from tracklog._cli import main

sys.exit(main())
