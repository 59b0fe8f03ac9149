"""What a batch run gives back: one :class:`FileResult` per input and the :class:`BatchSummary`.

Apart from :mod:`~facerestore.pipeline.batch` (which fills them) so that the report
(:mod:`~facerestore.pipeline.report`) and the front-ends read them without importing the batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .restorer import FaceRecord

__all__ = ["BatchSummary", "FileResult"]


@dataclass
class FileResult:
    """What became of one input file."""

    path: Path
    faces: int = 0
    outputs: list[Path] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # An unexpected failure (not a bad input file): kept so a front-end can show its traceback.
    exception: BaseException | None = field(default=None, repr=False)
    # What the report records: the input's size, and one record per restored face (box, score,
    # landmarks, identity score, weight used, output paths), see pipeline/report.py.
    size_bytes: int | None = None
    width: int | None = None
    height: int | None = None
    face_records: list[FaceRecord] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class BatchSummary:
    files: int = 0
    results: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)  # run-wide notes (models chosen, scores unavailable)
    model_files: dict[str, str] = field(default_factory=dict)  # role -> weights file, for the report
    report_path: Path | None = None  # where the JSON report was written, if asked (options.report)

    @property
    def succeeded(self) -> int:
        return sum(r.ok for r in self.results)

    @property
    def faces(self) -> int:
        return sum(r.faces for r in self.results)

    @property
    def failures(self) -> list[tuple[Path, str]]:
        return [(r.path, r.error) for r in self.results if r.error is not None]

    @property
    def no_face(self) -> list[Path]:
        return [r.path for r in self.results if r.ok and r.faces == 0]

    def report(self) -> str:
        done = len(self.results)
        head = (f"interrupted after {done} of {self.files} files: " if self.interrupted else "")
        lines = [f"{head}{self.succeeded}/{self.files} files restored, {self.faces} faces, "
                 f"{len(self.failures)} failed, {self.seconds:.1f} s"]
        if self.no_face:
            lines.append(f"no face found in {len(self.no_face)}: " + ", ".join(p.name for p in self.no_face))
        scored = [(rec.identity, r.path, rec.index) for r in self.results for rec in r.face_records
                  if rec.identity is not None]
        if scored:
            low, path, index = min(scored)
            lines.append(f"identity score (ArcFace cosine, input vs restored face): mean "
                         f"{sum(s for s, _, _ in scored) / len(scored):.3f}, lowest {low:.3f} "
                         f"({path.name} face {index})")
        return "\n".join(lines)
