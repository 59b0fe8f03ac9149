"""``facerestore evaluate``: the command lives with the metrics (facerestore.metrics.cli)."""
from facerestore.metrics.cli import add_parser, run

__all__ = ["add_parser", "run"]
