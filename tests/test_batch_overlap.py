"""run_batch decodes ahead and writes behind in threads: same files, same bytes, same order."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from facerestore.pipeline import batch
from facerestore.pipeline.options import RestoreOptions
from facerestore.pipeline.restorer import Restorer
from test_restorer import BLAKE_LANDMARKS, ConstantFaceNet, FixedDetector


def _inputs(folder: Path) -> list[Path]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    files = []
    for i in range(4):
        path = folder / f"p{i}.png"
        if i == 2:
            path.write_bytes(b"not an image")  # a bad file in the middle
        else:
            cv2.imwrite(str(path), rng.integers(0, 256, (300, 620, 3), dtype=np.uint8))
        files.append(path)
    return files


def _run(files, out: Path, overlap: bool):
    restorer = Restorer(model=ConstantFaceNet(0.25), upscale=1, detector=FixedDetector(BLAKE_LANDMARKS),
                        parser=None)
    seen = []
    summary = batch.run_batch(files, out, RestoreOptions(weight=0.7), restorer=restorer, overlap=overlap,
                              on_file=lambda r: seen.append(r.path))
    return summary, seen


def test_overlapped_batch_writes_the_same_bytes_in_order(tmp_path):
    files = _inputs(tmp_path / "in")
    together, seen_a = _run(files, tmp_path / "a", overlap=True)
    apart, seen_b = _run(files, tmp_path / "b", overlap=False)
    assert seen_a == seen_b == files
    assert [r.path for r in together.results] == files
    assert [r.ok for r in together.results] == [True, True, False, True]
    assert "p2.png" in together.results[2].error
    assert together.faces == apart.faces == 6
    written_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    written_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert written_a == written_b and len(written_a) == 3 * (1 + 3 * 2)
    for rel in written_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    for result in together.results[:2]:
        assert result.outputs and all(p.exists() for p in result.outputs)


def test_a_failed_write_is_reported_for_its_file_and_the_batch_goes_on(tmp_path, monkeypatch):
    files = [f for f in _inputs(tmp_path / "in") if f.name != "p2.png"]
    real = batch.encode_image

    def failing(image, ext, quality=None, name=None, **kw):
        if name is not None and "p1" in Path(name).name:
            raise OSError(28, "No space left on device")
        return real(image, ext, name=name) if quality is None else real(image, ext, quality, name=name)

    monkeypatch.setattr(batch, "encode_image", failing)
    summary, seen = _run(files, tmp_path / "out", overlap=True)
    assert seen == files
    assert [r.ok for r in summary.results] == [True, False, True]
    assert "No space left" in summary.results[1].error
    assert not list((tmp_path / "out").rglob("p1*"))  # nothing of the failed file
    assert list((tmp_path / "out").rglob("p3*"))


def test_a_run_removes_the_stale_temporary_files_a_killed_run_left_and_nothing_else(tmp_path):
    import os
    import time

    from facerestore.io.atomic import temporary_path

    files = _inputs(tmp_path / "in")[:1]
    out = tmp_path / "out"
    (out / "restored_imgs").mkdir(parents=True)
    stale = [temporary_path(out / "restored_imgs" / "p0.png"), temporary_path(out / "restored_faces" / "p0_00.png")]
    live = temporary_path(out / "restored_imgs" / "p9.png")  # another shard writing now
    kept = [out / "restored_imgs" / ".keep", out / ".hidden", out / "restored_imgs" / ".p0.png.notours.tmp"]
    for path in [*stale, live, *kept]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    hour_ago = time.time() - 3600
    for path in [*stale, *kept]:
        os.utime(path, (hour_ago, hour_ago))
    summary, _ = _run(files, out, overlap=True)
    assert [r.ok for r in summary.results] == [True]
    assert not any(p.exists() for p in stale)
    assert live.exists() and all(p.exists() for p in kept)
    assert any("removed 2 temporary file(s)" in n for n in summary.notes)


def test_faces_of_several_files_go_through_the_network_together(tmp_path):
    """batch_size > 1 (a GPU): files are restored in groups, their faces in shared batches; the
    outputs are those of one file at a time, and a bad file in a group fails alone."""
    files = _inputs(tmp_path / "in")
    calls = []

    class Counting(ConstantFaceNet):
        def forward(self, x, return_rgb=True, randomize_noise=True):
            calls.append(x.shape[0])
            return super().forward(x, return_rgb, randomize_noise)

    def run(out, batch_size):
        calls.clear()
        restorer = Restorer(model=Counting(0.25), upscale=1, detector=FixedDetector(BLAKE_LANDMARKS),
                            parser=None, batch_size=batch_size)
        return batch.run_batch(files, out, RestoreOptions(weight=0.7), restorer=restorer), list(calls)

    grouped, grouped_calls = run(tmp_path / "g", 4)  # 2 files per group, 4 faces per call
    single, single_calls = run(tmp_path / "s", 1)
    assert single_calls == [1] * 6
    # group 1 = p0 + p1 (4 faces, one call); group 2 = p2 (bad) + p3 (2 faces): tried together, then alone
    assert grouped_calls[0] == 4 and sum(grouped_calls) >= 6
    assert [r.ok for r in grouped.results] == [True, True, False, True]
    for rel in [p.relative_to(tmp_path / "s") for p in (tmp_path / "s").rglob("*") if p.is_file()]:
        assert (tmp_path / "g" / rel).read_bytes() == (tmp_path / "s" / rel).read_bytes(), rel


def test_restore_many_equals_restore_one_by_one(shared_data):
    blake = cv2.imread(str(shared_data / "photos" / "Blake_Lively.jpg"))
    r = Restorer(model=ConstantFaceNet(-0.5), upscale=2, detector=FixedDetector(BLAKE_LANDMARKS), parser=None,
                 batch_size=3)
    flipped = np.ascontiguousarray(blake[:, ::-1])
    many = r.restore_many([blake, flipped, blake], weight=0.6, landmarks=[None, None, BLAKE_LANDMARKS[:1]])
    one = [r.restore(blake, weight=0.6), r.restore(flipped, weight=0.6),
           r.restore(blake, weight=0.6, landmarks=BLAKE_LANDMARKS[:1])]
    assert [len(m.restored) for m in many] == [2, 2, 1]
    for a, b in zip(many, one, strict=True):
        assert np.array_equal(a.image, b.image)
        assert all(np.array_equal(x, y) for x, y in zip(a.restored, b.restored, strict=True))
        assert [f.landmarks for f in a.faces] == [f.landmarks for f in b.faces]
