"""Video restoration: faces tracked across frames, steadied, restored and pasted back, with the
source's frame timing and audio kept (``pip install "facerestore[video]"`` for PyAV).

>>> from facerestore import Restorer
>>> summary = Restorer("v1.4").enhance_video("clip.mp4", "clip_restored.mp4")
>>> print(summary.report())
"""
from __future__ import annotations

from .restore import VideoOptions, VideoSummary, restore_frames, restore_video
from .tracking import FaceTracker, OneEuroFilter, Smoothing, TrackedFace, TrackerSettings

__all__ = ["VideoOptions", "VideoSummary", "restore_video", "restore_frames", "FaceTracker", "OneEuroFilter",
           "Smoothing", "TrackedFace", "TrackerSettings"]
