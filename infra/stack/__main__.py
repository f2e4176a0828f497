"""``python -m infra.stack COMMAND``: see ``infra.stack``."""

import sys

from infra.stack.commands import main

sys.exit(main())
