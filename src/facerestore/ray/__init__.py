"""Face restoration as a Ray Data stage (the optional extra ``ray``: ``pip install "facerestore[ray]"``).

* :class:`FaceRestore`: a callable class for ``Dataset.map_batches`` that loads the models once
  per actor and turns rows of image bytes (with their paths) into restored image bytes, face
  records and notes, or writes the official layout itself (``output=``); errors are per row.
* :func:`run_ray`: a whole run, as ``facerestore restore --engine ray`` does it: resume, per
  file failures, retries when a worker dies, and the summary ``facerestore summarize`` reads.

Absolute imports only: inside this package the name ``ray`` must stay the Ray library's.
Nothing imports Ray until a run starts.
"""
from __future__ import annotations

from facerestore.ray.driver import RayRunSummary, RaySettings, list_inputs, run_ray
from facerestore.ray.stage import OUTPUT_COLUMNS, FaceRestore, RowResult

__all__ = ["FaceRestore", "OUTPUT_COLUMNS", "RayRunSummary", "RaySettings", "RowResult", "list_inputs", "run_ray"]
