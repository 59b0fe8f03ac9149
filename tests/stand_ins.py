"""Stand-in detectors shared by the tests (pytest does not collect this module)."""
from __future__ import annotations

import numpy as np


class NoDetector:
    def detect(self, img, conf_threshold=0.97):
        raise AssertionError("detection must be skipped when landmarks are given")


class FixedDetector:
    """Detects the given landmarks (so paths through detection are testable without weights)."""

    def __init__(self, landmarks):
        self.rows = []
        for lm in landmarks:
            x1, y1 = lm.min(0) - 20
            x2, y2 = lm.max(0) + 20
            self.rows.append(np.concatenate([[x1, y1, x2, y2, 0.99], lm.reshape(-1)]))

    def detect(self, img, conf_threshold=0.97):
        return np.array(self.rows, np.float32).reshape(-1, 15)
