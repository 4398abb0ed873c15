"""``python -m ccfast`` is the ``ccfast`` command."""

from .cli import main

raise SystemExit(main())
