"""``python -m study``: the same as the ``study`` command."""

from study.cli import main

raise SystemExit(main())
