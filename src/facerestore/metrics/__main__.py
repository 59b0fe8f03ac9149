"""``python -m facerestore.metrics --restored DIR --gt DIR ...``: the evaluate command."""
import sys

from .cli import main

sys.exit(main())
