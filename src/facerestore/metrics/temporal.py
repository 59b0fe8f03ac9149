"""Temporal stability of face regions across video frames (the flicker measure).

A face that is detected, aligned and restored in each frame on its own jitters and shimmers.
The score here is the mean absolute change between consecutive aligned face crops of one track,
in grey levels (0..255 scale), pooled over every consecutive pair of every track. Scoring the
restored crops and the input crops of the same tracks gives a ratio: above 1 means the restoration
added flicker that the input did not have; smoothing should bring it down.

Real motion also changes the crops, so compare a restored clip with its own input (the ratio),
or two restorations of the same clip, rather than scores of different clips.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Track = Sequence[np.ndarray | None]


def _pair_changes(track: Track) -> list[float]:
    """Mean |f_t − f_{t−1}| for each consecutive pair present (``None`` marks a missed frame,
    which breaks the chain: no pair spans it)."""
    changes = []
    prev = None
    for i, crop in enumerate(track):
        if crop is None:
            prev = None
            continue
        cur = np.asarray(crop)
        if cur.dtype == np.uint16:
            cur = cur.astype(np.float64) / 257.0  # measure 16-bit crops on the 8-bit scale
        cur = cur.astype(np.float64, copy=False)
        if prev is not None:
            if prev.shape != cur.shape:
                raise ValueError(f"crops of one track must share a shape (aligned faces): frame {i} is "
                                 f"{cur.shape}, the previous one {prev.shape}")
            changes.append(float(np.mean(np.abs(cur - prev))))
        prev = cur
    return changes


def flicker_score(tracks: Sequence[Track]) -> float:
    """Mean absolute frame-to-frame change of aligned face crops, over all tracks.

    ``tracks``: one sequence of crops per tracked face, in frame order; crops are ``(H, W)`` or
    ``(H, W, C)`` arrays of one shape within a track (uint8, uint16 or float on the 0..255 scale);
    ``None`` for a frame where the face was missed. Every consecutive pair counts once, so long
    tracks weigh more. Returns NaN when no track has two consecutive crops.
    """
    changes: list[float] = []
    for track in tracks:
        changes += _pair_changes(track)
    return float(np.mean(changes)) if changes else math.nan


@dataclass(frozen=True)
class FlickerReport:
    restored: float  # flicker score of the restored crops
    input: float     # flicker score of the input crops of the same tracks
    ratio: float     # restored / input; < 1 means steadier than the input

    def as_dict(self) -> dict[str, float]:
        return {"restored": self.restored, "input": self.input, "ratio": self.ratio}


def compare_flicker(restored_tracks: Sequence[Track], input_tracks: Sequence[Track]) -> FlickerReport:
    """Flicker of the restored crops, of the input crops, and their ratio."""
    if len(restored_tracks) != len(input_tracks):
        raise ValueError(f"{len(restored_tracks)} restored tracks but {len(input_tracks)} input tracks")
    r, i = flicker_score(restored_tracks), flicker_score(input_tracks)
    # A perfectly still input has no flicker to compare with: the ratio is then undefined (NaN).
    ratio = r / i if i > 0 else math.nan
    return FlickerReport(r, i, ratio)
