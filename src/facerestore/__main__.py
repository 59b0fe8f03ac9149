"""``python -m facerestore`` (also what ``torchrun -m facerestore`` runs)."""
import sys

from facerestore.cli import main

sys.exit(main())
