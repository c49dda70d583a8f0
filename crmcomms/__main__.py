"""``python -m crmcomms``."""

import sys

from crmcomms.cli import main

sys.exit(main())
