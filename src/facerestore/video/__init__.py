"""Video restoration, the public names in one place: faces tracked across frames, steadied,
restored and pasted back, with the source's frame timing and audio kept
(``pip install "facerestore[video]"`` for PyAV).

>>> from facerestore import Restorer
>>> summary = Restorer("v1.4").enhance_video("clip.mp4", "clip_restored.mp4")
>>> print(summary.report())

Where the parts live, so that imports run down the layers (tests/test_layout.py) and
``Restorer.enhance_video`` needs nothing above the pipeline: reading and writing video files in
``io/video.py``, tracking and landmark smoothing in ``face/tracking.py``, the frame loop in
``pipeline/video.py`` (beside ``pipeline/batch.py``, the photo loop).
"""
from __future__ import annotations

from ..face.tracking import FaceTracker, OneEuroFilter, Smoothing, TrackedFace, TrackerSettings
from ..io.video import VideoInfo, VideoReadError, VideoWriteError, probe
from ..pipeline.video import VideoOptions, VideoSummary, restore_frames, restore_video

__all__ = ["VideoOptions", "VideoSummary", "restore_video", "restore_frames", "FaceTracker", "OneEuroFilter",
           "Smoothing", "TrackedFace", "TrackerSettings", "VideoInfo", "VideoReadError", "VideoWriteError", "probe"]
