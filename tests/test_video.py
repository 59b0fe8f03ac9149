"""Video restoration end to end, on short clips built here with PyAV.

Each clip is a face from ../shared/data/aligned, shrunk to 64 px, gliding across a textured
background at 160x120, with a 440 Hz tone as its sound. Faces are found by a stand-in detector
that locates the face by template matching (so the tests do not depend on a detector's luck with
tiny faces) and can add seeded jitter to its landmarks, as real detectors do; one test uses the
built-in MTCNN. The face network is a tiny random-weight GFPGANv1Clean in the release layout.
"""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

av = pytest.importorskip("av", reason='video tests need PyAV: pip install -e ".[test,video]"')

from facerestore import cli  # noqa: E402
from facerestore.face import align  # noqa: E402
from facerestore.io.video import VideoReadError, is_video, list_media, probe, sniff_video  # noqa: E402
from facerestore.models import zoo  # noqa: E402
from facerestore.pipeline.restorer import Restorer  # noqa: E402
from facerestore.pipeline.video import restore_frames  # noqa: E402

W, H, FACE, FPS = 160, 120, 64, 12
SAMPLE_RATE = 16000
TINY_FACE_SIZE = 64  # the tiny_checkpoint fixture's crops: 64 px keeps the many frames fast


# --------------------------------------------------------------------------- clips


def face_landmarks(x: float, y: float) -> np.ndarray:
    """The 5 landmarks of the 64 px aligned face whose top-left corner is at (x, y)."""
    return (align.face_template(FACE) + [x, y]).astype(np.float32)


def path_at(i: int) -> tuple[float, float]:
    """A smooth glide left to right with a gentle bob (sub-pixel positions)."""
    return 20 + 1.3 * i, 28 + 2 * math.sin(i / 4)


def background(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.uniform(0, 255, (H, W, 3)).astype(np.float32), (0, 0), 3)
    ramp = np.linspace(40, 200, W, dtype=np.float32)[None, :, None]
    return np.clip(0.5 * noise + 0.5 * ramp, 0, 255).astype(np.uint8)


def compose(bg: np.ndarray, face: np.ndarray, x: float, y: float) -> np.ndarray:
    """Paste the face at a sub-pixel position with a soft oval mask."""
    m = np.float32([[1, 0, x], [0, 1, y]])
    moved = cv2.warpAffine(face, m, (W, H), flags=cv2.INTER_LINEAR)
    oval = np.zeros((FACE, FACE), np.float32)
    cv2.ellipse(oval, (FACE // 2, FACE // 2 + 2), (FACE // 2 - 6, FACE // 2 - 2), 0, 0, 360, 1.0, -1)
    mask = cv2.warpAffine(cv2.GaussianBlur(oval, (0, 0), 2), m, (W, H))[:, :, None]
    return (moved * mask + bg * (1 - mask)).round().astype(np.uint8)


def make_clip(path: Path, face: np.ndarray | None, frames: int = 16, *, audio: bool = True, rotation: int = 0,
              pts: list[int] | None = None, time_base: Fraction | None = None, faststart: bool = False) -> Path:
    """Write a clip with PyAV: H.264 yuv420p at FPS (or the given timestamps), AAC tone."""
    bg = background()
    opts = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=opts) as c:
        v = c.add_stream("libx264", rate=FPS, options={"crf": "12", "preset": "ultrafast"})
        v.width, v.height, v.pix_fmt = W, H, "yuv420p"
        if time_base is not None:
            v.time_base = v.codec_context.time_base = time_base
        if rotation:
            v.set_display_rotation(rotation)
        a = None
        if audio:
            a = c.add_stream("aac", rate=SAMPLE_RATE)
            a.layout = "mono"
        for i in range(frames):
            img = bg if face is None else compose(bg, face, *path_at(i))
            frame = av.VideoFrame.from_ndarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], time_base
            for p in v.encode(frame):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        if a is not None:
            n = int(SAMPLE_RATE * frames / FPS)
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / SAMPLE_RATE)).astype(np.float32)
            for k in range(0, n, 1024):
                af = av.AudioFrame.from_ndarray(tone[None, k:k + 1024], format="flt", layout="mono")
                af.sample_rate, af.pts = SAMPLE_RATE, k
                for p in a.encode(af):
                    c.mux(p)
            for p in a.encode():
                c.mux(p)
    return path


def read_clip(path: Path) -> dict:
    """Frames (BGR), their times, the stream's rate/duration, and the audio packets' bytes."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames, times, rotations = [], [], []
        for f in c.decode(v):
            frames.append(cv2.cvtColor(f.to_ndarray(format="rgb24"), cv2.COLOR_RGB2BGR))
            times.append(float(f.pts * v.time_base))
            rotations.append(f.rotation)
        info = dict(frames=frames, times=times, rotations=rotations, rate=v.average_rate,
                    duration=float(v.duration * v.time_base), size=(v.width, v.height), codec=v.codec_context.name)
    with av.open(str(path)) as c:
        info["audio"] = [(s.codec_context.name, s.sample_rate) for s in c.streams.audio]
        info["audio_packets"] = ([(p.pts, bytes(p)) for p in c.demux(*c.streams.audio) if p.dts is not None]
                                 if c.streams.audio else [])
    return info


# --------------------------------------------------------------------------- stand-ins


class TemplateDetector:
    """Finds the clip's face by template matching and reports its landmarks in the (N, 15)
    detector layout, with seeded Gaussian jitter of ``jitter`` pixels, as a real detector's."""

    def __init__(self, face: np.ndarray, jitter: float = 0.0, seed: int = 0, miss: set[int] = frozenset()):
        self.face, self.jitter, self.rng, self.miss = face, jitter, np.random.default_rng(seed), miss
        self.calls = 0

    def detect(self, img: np.ndarray, conf_threshold: float = 0.97) -> np.ndarray:
        call, self.calls = self.calls, self.calls + 1
        score = cv2.matchTemplate(img, self.face, cv2.TM_CCOEFF_NORMED)
        _, best, _, (x, y) = cv2.minMaxLoc(score)
        if best < 0.5 or call in self.miss:
            return np.zeros((0, 15), np.float32)
        # refine to sub-pixel with a parabola through the neighbours of the peak
        dx = dy = 0.0
        if 0 < x < score.shape[1] - 1:
            l, c, r = score[y, x - 1], score[y, x], score[y, x + 1]
            dx = 0.5 * (l - r) / (l - 2 * c + r) if (l - 2 * c + r) != 0 else 0.0
        if 0 < y < score.shape[0] - 1:
            u, c, d = score[y - 1, x], score[y, x], score[y + 1, x]
            dy = 0.5 * (u - d) / (u - 2 * c + d) if (u - 2 * c + d) != 0 else 0.0
        lm = face_landmarks(x + dx, y + dy) + self.rng.normal(0, self.jitter, (5, 2)).astype(np.float32)
        row = np.concatenate([[x, y, x + FACE, y + FACE, 0.99], lm.reshape(-1)]).astype(np.float32)
        return row[None]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    src = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "aligned" / "Julia_Roberts_crop.png"
    if not src.is_file():
        pytest.skip("../shared/data/aligned is not present")
    return cv2.resize(cv2.imread(str(src)), (FACE, FACE), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def clips(tmp_path_factory, face) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {"plain": make_clip(folder / "clip.mp4", face)}


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "empty-cache"))
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")


def restorer_with(checkpoint: Path, detector, upscale: float = 2, **kw) -> Restorer:
    return Restorer(model=checkpoint, upscale=upscale, detector=detector, parser=None, bg_upsampler=None, **kw)


def flicker(tracks: list[list[np.ndarray]]) -> float:
    """Mean absolute frame-to-frame change of aligned face crops (a local copy of the measure in
    facerestore.metrics.temporal, used when that module is not there)."""
    try:
        from facerestore.metrics.temporal import flicker_score
    except ImportError:
        changes = [np.abs(b.astype(np.float64) - a.astype(np.float64)).mean()
                   for track in tracks for a, b in zip(track, track[1:])]
        return float(np.mean(changes))
    return flicker_score(tracks)


def true_crops(frames: list[np.ndarray], scale: float) -> list[np.ndarray]:
    """Each frame's face cut at its true (unjittered) position: whatever moves inside these crops
    from frame to frame is flicker, not motion."""
    return [align.align_faces(f, [face_landmarks(*path_at(i)) * scale], FACE)[0][0] for i, f in enumerate(frames)]


# --------------------------------------------------------------------------- tests


def test_restored_clip_keeps_frames_rate_duration_and_audio(clips, face, tiny_checkpoint, tmp_path):
    src = clips["plain"]
    r = restorer_with(tiny_checkpoint, TemplateDetector(face))
    progress = []
    summary = r.enhance_video(src, tmp_path / "out.mp4", on_progress=lambda done, total: progress.append((done, total)))
    a, b = read_clip(src), read_clip(tmp_path / "out.mp4")
    assert len(b["frames"]) == len(a["frames"]) == 16 == summary.frames
    assert b["rate"] == a["rate"] == FPS
    assert b["times"] == pytest.approx(a["times"], abs=1e-6)
    assert b["duration"] == pytest.approx(a["duration"], abs=1e-3)
    assert b["size"] == (2 * W, 2 * H) and b["codec"] == "h264"
    # the sound: same codec and rate, the very same packets (remuxed, not re-encoded)
    assert b["audio"] == a["audio"] == [("aac", SAMPLE_RATE)]
    assert [p for _, p in b["audio_packets"]] == [p for _, p in a["audio_packets"]]
    assert summary.audio_packets == len(a["audio_packets"]) and summary.audio_streams == 1
    assert summary.faces_tracked == 1 and summary.face_frames == 16
    assert progress[-1] == (16, 16) and len(progress) == 16
    assert "16 frames, 1 face tracked" in summary.report()
    # the face was restored: inside it the output is not the plain upscale; outside it, it is.
    for i in (0, 8, 15):
        plain = cv2.resize(a["frames"][i], (2 * W, 2 * H), interpolation=cv2.INTER_LANCZOS4).astype(int)
        out = b["frames"][i].astype(int)
        x, y = path_at(i)
        inner = (slice(int(2 * y) + 30, int(2 * y) + 100), slice(int(2 * x) + 30, int(2 * x) + 100))
        assert np.abs(out[inner] - plain[inner]).mean() > 8
        far = np.ones(out.shape[:2], bool)
        far[max(0, int(2 * y) - 40):int(2 * y) + 170, max(0, int(2 * x) - 40):int(2 * x) + 170] = False
        assert np.abs(out[far] - plain[far]).mean() < 4


def test_smoothing_lowers_flicker_of_jittered_detections(clips, face, tiny_checkpoint, tmp_path):
    src = clips["plain"]
    scores = {}
    for smooth in (True, False):
        r = restorer_with(tiny_checkpoint, TemplateDetector(face, jitter=1.5, seed=3))
        out = tmp_path / f"smooth_{smooth}.mp4"
        r.enhance_video(src, out, smooth=smooth, weight=1.0, crf=0)
        scores[smooth] = flicker([true_crops(read_clip(out)["frames"], 2)])
    scores["input"] = flicker([true_crops(read_clip(src)["frames"], 1)])
    assert scores[True] < 0.75 * scores[False], scores


def test_batched_frames_give_the_pixels_of_enhance(clips, face, tiny_checkpoint):
    frames = read_clip(clips["plain"])["frames"][:3]
    r = restorer_with(tiny_checkpoint, TemplateDetector(face))
    from facerestore.face.tracking import TrackedFace

    faces = [[TrackedFace(0, face_landmarks(*path_at(i)), True)] for i in range(3)]
    batched = restore_frames(r, frames, faces, 0.5)
    single = [restore_frames(r, [f], [fs], 0.5)[0] for f, fs in zip(frames, faces)]
    for a, b in zip(batched, single):
        assert a.shape == b.shape == (2 * H, 2 * W, 3)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_short_misses_keep_the_face_and_its_identity(clips, face, tiny_checkpoint, tmp_path):
    seen: dict[bool, list] = {}
    for smooth in (True, False):
        r = restorer_with(tiny_checkpoint, TemplateDetector(face, miss={5, 6, 7}), batch_size=4)
        faces = []
        summary = r.enhance_video(clips["plain"], tmp_path / f"m{smooth}.mp4", smooth=smooth,
                                  on_faces=lambda i, fs: faces.append([f.track_id for f in fs]))
        seen[smooth] = faces
        assert summary.faces_tracked == 1
    assert all(ids == [0] for ids in seen[True])  # carried through the misses by optical flow
    assert [len(ids) for ids in seen[False]] == [1] * 5 + [0] * 3 + [1] * 8  # per-frame: missed is missed


def test_detecting_every_few_frames_follows_the_face(clips, face, tiny_checkpoint, tmp_path):
    det = TemplateDetector(face)
    r = restorer_with(tiny_checkpoint, det)
    found = []
    r.enhance_video(clips["plain"], tmp_path / "e4.mp4", detect_every=4,
                    on_faces=lambda i, fs: found.append((i, fs)))
    assert det.calls == 4  # frames 0, 4, 8, 12
    for i, fs in found:
        assert len(fs) == 1
        err = np.abs(fs[0].landmarks - face_landmarks(*path_at(i))).max()
        assert err < 2.5, (i, err)


def test_rotation_metadata_is_applied(face, tiny_checkpoint, tmp_path):
    # As a phone stores a portrait clip: frames sideways, a display matrix that turns them upright.
    src = make_clip(tmp_path / "rot.mp4", np.ascontiguousarray(np.rot90(face, -1)), frames=4, rotation=90,
                    audio=False)
    r = restorer_with(tiny_checkpoint, TemplateDetector(face), upscale=1)
    summary = r.enhance_video(src, tmp_path / "rot_out.mp4")
    a, b = read_clip(src), read_clip(tmp_path / "rot_out.mp4")
    assert a["rotations"][0] == 90 and b["rotations"][0] == 0
    assert b["size"] == (H, W) and len(b["frames"]) == 4
    assert summary.face_frames == 4  # the upright face was found: detection saw turned frames
    out = b["frames"][2].astype(int)
    upright = np.rot90(a["frames"][2]).astype(int)  # what a player shows: turned 90° counter-clockwise
    wrong = np.rot90(a["frames"][2], -1).astype(int)
    assert np.abs(out - upright).mean() < 0.5 * np.abs(out - wrong).mean()
    assert b["audio"] == [] and summary.audio_streams == 0
    assert any("rotated 90" in n for n in summary.notes)


def test_variable_frame_rate_timestamps_are_kept(face, tiny_checkpoint, tmp_path):
    tb = Fraction(1, 1200)
    pts = list(np.cumsum([0] + [100, 100, 50, 200, 100, 25, 100, 150, 100])[:10].astype(int))
    src = make_clip(tmp_path / "vfr.mp4", face, frames=10, pts=[int(p) for p in pts], time_base=tb, audio=False)
    r = restorer_with(tiny_checkpoint, TemplateDetector(face))
    r.enhance_video(src, tmp_path / "vfr_out.mp4")
    a, b = read_clip(src), read_clip(tmp_path / "vfr_out.mp4")
    assert len(b["frames"]) == 10
    assert b["times"] == pytest.approx(a["times"], abs=1e-6)
    assert b["times"] == pytest.approx([p / 1200 for p in pts], abs=1e-6)


def test_a_clip_without_faces_is_upscaled_with_a_note(tiny_checkpoint, tmp_path, face):
    src = make_clip(tmp_path / "empty.mp4", None, frames=6)
    notes = []
    summary = restorer_with(tiny_checkpoint, TemplateDetector(face)).enhance_video(
        src, tmp_path / "empty_out.mp4", on_note=notes.append)
    assert summary.frames == 6 and summary.face_frames == 0 and summary.faces_tracked == 0
    assert any("no face found" in n for n in notes)
    a, b = read_clip(src), read_clip(tmp_path / "empty_out.mp4")
    plain = cv2.resize(a["frames"][3], (2 * W, 2 * H), interpolation=cv2.INTER_LANCZOS4)
    assert np.abs(b["frames"][3].astype(int) - plain.astype(int)).mean() < 3
    assert [p for _, p in b["audio_packets"]] == [p for _, p in a["audio_packets"]]


@pytest.mark.parametrize("cut", ["index-last", "faststart-half", "faststart-head"])
def test_truncated_video_fails_clearly_and_writes_nothing(clips, face, tiny_checkpoint, tmp_path, cut):
    if cut == "index-last":
        data = clips["plain"].read_bytes()
        data = data[:len(data) // 2]
    else:
        data = make_clip(tmp_path / "fs.mp4", face, faststart=True).read_bytes()
        data = data[:len(data) // 2] if cut == "faststart-half" else data[:1000]
    src = tmp_path / "in" / "cut.mp4"
    src.parent.mkdir()
    src.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir()
    (out / "cut.mp4").write_bytes(b"an earlier result")
    r = restorer_with(tiny_checkpoint, TemplateDetector(face))
    with pytest.raises(VideoReadError, match="truncated"):
        r.enhance_video(src, out / "cut.mp4")
    assert sorted(p.name for p in out.iterdir()) == ["cut.mp4"]  # no temporary file left behind
    assert (out / "cut.mp4").read_bytes() == b"an earlier result"


@pytest.mark.parametrize("audio", [True, False])
def test_a_cut_mkv_is_reported_not_restored_short(face, tiny_checkpoint, tmp_path, capsys, audio):
    """Issue 14, finding 7: an MKV has no frame index; cut at 50 % it gave 23 of 48 frames, exit 0
    and "1/1 videos restored". Its header still gives the video's duration, which the frames
    decoded must reach."""
    whole = make_clip(tmp_path / "whole.mkv", face, frames=48, audio=audio)
    src = tmp_path / "in" / "cut.mkv"
    src.parent.mkdir()
    src.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    r = restorer_with(tiny_checkpoint, TemplateDetector(face))
    assert r.enhance_video(whole, tmp_path / "whole_out.mkv").frames == 48  # the whole file is fine
    with pytest.raises(VideoReadError, match=r"of about 48 frames.*truncated"):
        r.enhance_video(src, tmp_path / "cut_out.mkv")
    assert not (tmp_path / "cut_out.mkv").exists()
    out = tmp_path / "out"
    code = cli.main(["restore", "-i", str(src), "-o", str(out), "--model", str(tiny_checkpoint),
                     "--detector", "mtcnn", "--parser", "none", "--bg_upsampler", "none", "-s", "1",
                     "--video-preset", "ultrafast"])
    text = capsys.readouterr()
    assert code == 1 and "cut.mkv" in text.err and "of about 48 frames" in text.err
    assert "0/1 videos restored" in text.out and not any(p.is_file() for p in out.rglob("*"))
    if audio:  # only the whole file's length known, and audio that may outlast the video: said, not refused
        import dataclasses

        from facerestore.io.video import VideoReader

        reader = VideoReader(src, dataclasses.replace(probe(src), duration_of_container=True))
        assert sum(1 for _ in reader) < 48 and "of about 48 frames" in reader.shortfall


def test_odd_frame_sizes_are_padded_with_a_note(face, tiny_checkpoint, tmp_path):
    """Issue 14, finding 8: a 101x77 clip at -s 1 came out 102x78 without a word (yuv420p needs
    even sizes)."""
    src = tmp_path / "odd.mkv"
    with av.open(str(src), "w") as c:  # FFV1 holds odd sizes (x264 in yuv420p cannot)
        v = c.add_stream("ffv1", rate=FPS)
        v.width, v.height, v.pix_fmt = 101, 77, "yuv444p"
        for i in range(3):
            img = np.full((77, 101, 3), 40 * i, np.uint8)
            for p in v.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
    notes = []
    summary = restorer_with(tiny_checkpoint, TemplateDetector(face), upscale=1).enhance_video(
        src, tmp_path / "odd_out.mp4", on_note=notes.append)
    assert summary.size == (102, 78) and read_clip(tmp_path / "odd_out.mp4")["size"] == (102, 78)
    assert any("101x77" in n and "102x78" in n and "yuv420p" in n for n in notes), notes


def test_content_sniffing_finds_videos_whatever_their_names(clips, tmp_path, shared_data):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "clip.mp4").write_bytes(clips["plain"].read_bytes())
    (folder / "renamed.bin").write_bytes(clips["plain"].read_bytes())  # a video under another name
    (folder / "photo.jpg").write_bytes((shared_data / "photos" / "00.jpg").read_bytes())
    (folder / "notes.txt").write_text("not media")
    (folder / "broken.mp4").write_bytes(b"\0" * 100)  # a video by name only: reported, not skipped
    images, videos = list_media(folder)
    assert [p.name for p in images] == ["photo.jpg"]
    assert [p.name for p in videos] == ["broken.mp4", "clip.mp4", "renamed.bin"]
    (tmp_path / "photo.mp4").write_bytes((shared_data / "photos" / "00.jpg").read_bytes())
    assert list_media(tmp_path / "photo.mp4") == ([tmp_path / "photo.mp4"], [])  # content wins
    assert is_video(folder / "renamed.bin") and not is_video(folder / "photo.jpg")
    assert sniff_video(b"\x1a\x45\xdf\xa3" + bytes(60)) == "matroska"
    assert sniff_video(b"\x00\x00\x00\x18ftypavif" + bytes(60)) is None  # an AVIF still image
    info = probe(folder / "renamed.bin")
    assert (info.width, info.height, info.frames, info.audio) == (W, H, 16, ("aac",))


def test_cli_restores_a_folder_of_photos_and_videos(clips, tiny_checkpoint, tmp_path, shared_data, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "clip.mp4").write_bytes(clips["plain"].read_bytes())
    (folder / "renamed.bin").write_bytes(clips["plain"].read_bytes())
    photo = cv2.imread(str(shared_data / "photos" / "00.jpg"))
    cv2.imwrite(str(folder / "00.jpg"), cv2.resize(photo, (photo.shape[1] // 3, photo.shape[0] // 3)))
    out = tmp_path / "out"
    code = cli.main(["restore", "-i", str(folder), "-o", str(out), "--model", str(tiny_checkpoint),
                     "--detector", "mtcnn", "--parser", "none", "--bg_upsampler", "none", "-s", "1",
                     "--video-preset", "ultrafast"])
    assert code == 0, capsys.readouterr()
    assert sorted(p.name for p in (out / "restored_videos").iterdir()) == ["clip.mp4", "renamed.mp4"]
    assert (out / "restored_imgs" / "00.jpg").is_file()
    for name in ("clip.mp4", "renamed.mp4"):
        b = read_clip(out / "restored_videos" / name)
        assert len(b["frames"]) == 16 and b["rate"] == FPS and b["audio"] == [("aac", SAMPLE_RATE)]
    text = capsys.readouterr().out
    assert "clip.mp4: 16 frames" in text and "renamed.bin: 16 frames" in text


def test_cli_reports_a_truncated_video_and_leaves_no_output(clips, tiny_checkpoint, tmp_path, capsys):
    src = tmp_path / "bad.mp4"
    src.write_bytes(clips["plain"].read_bytes()[:3000])
    out = tmp_path / "out"
    code = cli.main(["restore", "-i", str(src), "-o", str(out), "--model", str(tiny_checkpoint),
                     "--detector", "mtcnn", "--parser", "none", "--bg_upsampler", "none"])
    err = capsys.readouterr().err
    assert code == 1 and "bad.mp4" in err and "truncated" in err
    assert not any(p.is_file() for p in out.rglob("*"))


def test_mtcnn_finds_the_face_of_a_clip(face, tiny_checkpoint, tmp_path):
    big = cv2.resize(face, (FACE * 2, FACE * 2), interpolation=cv2.INTER_CUBIC)
    src = tmp_path / "mtcnn.mp4"
    with av.open(str(src), "w") as c:
        v = c.add_stream("libx264", rate=FPS, options={"crf": "12", "preset": "ultrafast"})
        v.width, v.height, v.pix_fmt = 256, 192, "yuv420p"
        for i in range(4):
            img = cv2.resize(background(), (256, 192))
            img[30:158, 40 + 8 * i:168 + 8 * i] = big
            for p in v.encode(av.VideoFrame.from_ndarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), format="rgb24")):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
    r = Restorer(model=tiny_checkpoint, upscale=1, detector="mtcnn", parser=None, bg_upsampler=None)
    summary = r.enhance_video(src, tmp_path / "mtcnn_out.mp4")
    assert summary.frames == 4 and summary.faces_tracked == 1 and summary.face_frames == 4


class FailingDetector(TemplateDetector):
    def __init__(self, face, at: int, exc: BaseException):
        super().__init__(face)
        self.at, self.exc = at, exc

    def detect(self, img, conf_threshold=0.97):
        if self.calls == self.at:
            raise self.exc
        return super().detect(img, conf_threshold)


@pytest.mark.parametrize("exc", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_failure_half_way_leaves_no_partial_output(clips, face, tiny_checkpoint, tmp_path, exc):
    r = restorer_with(tiny_checkpoint, FailingDetector(face, at=9, exc=exc), batch_size=2)
    done = []
    with pytest.raises(type(exc)):
        r.enhance_video(clips["plain"], tmp_path / "half.mp4", on_progress=lambda n, total: done.append(n))
    assert done and done[-1] >= 8  # frames were encoded before it failed...
    assert list(tmp_path.iterdir()) == []  # ...and nothing of them is left


def test_bad_options_are_refused_before_any_work(clips, face, tiny_checkpoint, tmp_path):
    from facerestore.pipeline.options import OptionsError

    r = restorer_with(tiny_checkpoint, TemplateDetector(face))
    with pytest.raises(OptionsError, match="--detect-every"):
        r.enhance_video(clips["plain"], tmp_path / "x.mp4", detect_every=0)
    with pytest.raises(TypeError, match="unknown video option"):
        r.enhance_video(clips["plain"], tmp_path / "x.mp4", smoothness=3)
    with pytest.raises(Exception, match="cannot hold h264"):
        r.enhance_video(clips["plain"], tmp_path / "x.webm")
    assert list(tmp_path.iterdir()) == []


def test_cli_says_that_report_leaves_videos_out(clips, tiny_checkpoint, tmp_path, capsys):
    # --report has no video records: a video-only run used to end without the report and without a word.
    src = tmp_path / "bad.mp4"
    src.write_bytes(clips["plain"].read_bytes()[:3000])  # fails fast; the note comes before the work
    out = tmp_path / "out"
    cli.main(["restore", "-i", str(src), "-o", str(out), "--model", str(tiny_checkpoint), "--detector", "mtcnn",
              "--parser", "none", "--bg_upsampler", "none", "--report", str(out / "r.json")])
    err = capsys.readouterr().err
    assert "--report records photos only; the 1 video(s) of this run are not in it, so no report is written" in err
    assert not (out / "r.json").exists()


def test_a_shard_of_only_videos_writes_its_summary(clips, tiny_checkpoint, tmp_path, capsys):
    # It used to return before the shard summary, so `summarize` called the shard missing.
    src = tmp_path / "in"
    src.mkdir()
    (src / "bad.mp4").write_bytes(clips["plain"].read_bytes()[:3000])  # fails fast
    out = tmp_path / "out"
    assert cli.main(["restore", "-i", str(src), "-o", str(out), "--model", str(tiny_checkpoint), "--detector",
                     "mtcnn", "--parser", "none", "--bg_upsampler", "none", "--shard", "0/1"]) == 1
    capsys.readouterr()
    assert cli.main(["summarize", str(out)]) == 1
    text = capsys.readouterr().out
    assert "1 shards: 1 inputs, 0 restored" in text and "missing" not in text
    assert text.count("bad.mp4") == 1  # named once, not "bad.mp4: bad.mp4: ..."


def test_a_resumed_run_skips_complete_videos(clips, tiny_checkpoint, tmp_path, capsys):
    src = tmp_path / "clip.mp4"
    src.write_bytes(clips["plain"].read_bytes())
    out = tmp_path / "out"
    done = out / "restored_videos" / "clip.mp4"
    done.parent.mkdir(parents=True)
    done.write_bytes(b"a complete result of an earlier run")  # outputs appear only when complete
    code = cli.main(["restore", "-i", str(src), "-o", str(out), "--model", str(tiny_checkpoint), "--detector",
                     "mtcnn", "--parser", "none", "--bg_upsampler", "none", "--skip-existing"])
    assert code == 0
    assert done.read_bytes() == b"a complete result of an earlier run"
    assert "already complete" in capsys.readouterr().err
