"""``python -m voyo_trio`` runs the ``voyo-trio`` command."""

import sys

from ._cli import main

sys.exit(main())
