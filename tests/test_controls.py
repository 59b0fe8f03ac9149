"""Control and trust: colour match, identity score, detector settings, landmark check, report."""
from __future__ import annotations

import json
from pathlib import Path

import warnings

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from facerestore import cli
from facerestore.archs.arcface import ResNetArcFace
from facerestore.face.detectors import load_detector
from facerestore.face.sanity import implausibility, split_plausible
from facerestore.models import ModelDescriptor, Purpose, zoo
from facerestore.pipeline.batch import run_batch
from facerestore.pipeline.colour import match_colour
from facerestore.pipeline.options import OptionsError, RestoreOptions
from facerestore.pipeline.restorer import Restorer
from stand_ins import FixedDetector, NoDetector

REPO = Path(__file__).resolve().parents[1]
# Hand-placed landmarks (RetinaFace order) on ../shared/data/photos/Blake_Lively.jpg (as test_restorer).
BLAKE_LANDMARKS = [
    np.array([[150.7, 180.0], [215.0, 203.3], [170.0, 229.0], [132.7, 245.0], [180.0, 260.0]], np.float32),
    np.array([[465.0, 159.3], [548.3, 175.0], [499.3, 213.3], [455.0, 237.3], [532.7, 254.0]], np.float32),
]
FACE_NET = ModelDescriptor("StandIn", Purpose.FACE_RESTORATION, input_size=512, input_range=(-1.0, 1.0),
                           takes_noise=True)


class ColourShiftNet(nn.Module):
    """'Restores' by tinting: less contrast, redder and less blue (input is RGB in [-1, 1])."""

    descriptor = FACE_NET

    def forward(self, x, return_rgb=True, randomize_noise=True):
        shift = torch.tensor([0.35, 0.05, -0.3]).view(1, 3, 1, 1)
        return (0.85 * x + shift).clamp(-1, 1), []


class IdentityFaceNet(nn.Module):
    descriptor = FACE_NET

    def forward(self, x, return_rgb=True, randomize_noise=True):
        return x, []


class InvertNet(nn.Module):
    """A 'restoration' that is no longer the same person for any sane identity network."""

    descriptor = FACE_NET

    def forward(self, x, return_rgb=True, randomize_noise=True):
        return -x.flip(2), []  # negative and upside down


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(zoo.OFFLINE_ENV, "1")


@pytest.fixture
def blake(shared_data):
    img = cv2.imread(str(shared_data / "photos" / "Blake_Lively.jpg"))
    assert img is not None
    return img


@pytest.fixture(scope="module")
def arcface_file(tmp_path_factory) -> Path:
    """A random-weight ArcFace in the release layout (arcface_resnet18.pth is a bare state dict)."""
    torch.manual_seed(1)
    net = ResNetArcFace("IRBlock", [2, 2, 2, 2], use_se=False)
    path = tmp_path_factory.mktemp("arcface") / "arcface_resnet18.pth"
    torch.save(net.state_dict(), path)
    return path


def _centre_mean(face: np.ndarray) -> np.ndarray:
    """Mean BGR of the middle of an aligned face (cheeks, nose, mouth)."""
    s = face.shape[0]
    return face[int(0.4 * s):int(0.7 * s), int(0.35 * s):int(0.65 * s)].reshape(-1, 3).mean(0)


# --------------------------------------------------------------------------- colour match


def test_colour_match_brings_back_the_input_colours(blake, tmp_path):
    plain = Restorer(model=ColourShiftNet(), upscale=1, detector=FixedDetector(BLAKE_LANDMARKS), parser=None)
    cropped, shifted, _ = plain.enhance(blake, weight=1)
    # The stand-in really shifts colours: far more than the tolerance below.
    assert max(np.abs(_centre_mean(s) - _centre_mean(c)).max() for s, c in zip(shifted, cropped)) > 25

    matched = Restorer(model=ColourShiftNet(), upscale=1, detector=FixedDetector(BLAKE_LANDMARKS), parser=None,
                       color_match=True)
    summary = run_batch([_save(blake, tmp_path / "in.png")], tmp_path / "out", RestoreOptions(weight=1.0, color_match=True), restorer=matched)
    assert summary.succeeded == 1 and summary.faces == 2
    for i in range(2):
        crop = cv2.imread(str(tmp_path / "out" / "cropped_faces" / f"in_{i:02d}.png"))
        face = cv2.imread(str(tmp_path / "out" / "restored_faces" / f"in_{i:02d}.png"))
        diff = np.abs(_centre_mean(face) - _centre_mean(crop))
        assert diff.max() < 3, diff  # within a few grey levels per channel
        assert summary.results[0].face_records[i].color_matched


def _save(img: np.ndarray, path: Path) -> Path:
    cv2.imwrite(str(path), img)
    return path


def test_colour_match_is_off_by_default_and_keeps_grey_grey(blake):
    kwargs = dict(model=ColourShiftNet(), upscale=1, detector=NoDetector(), parser=None, keep_grey=False)
    default = Restorer(**kwargs).enhance(blake, weight=1, landmarks=BLAKE_LANDMARKS)
    explicit_off = Restorer(**kwargs, color_match=False).enhance(blake, weight=1, landmarks=BLAKE_LANDMARKS)
    assert all(np.array_equal(a, b) for a, b in zip(default[1], explicit_off[1]))
    assert np.array_equal(default[2], explicit_off[2])

    grey = cv2.cvtColor(cv2.cvtColor(blake, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    tinted = Restorer(**kwargs).enhance(grey, weight=1, landmarks=BLAKE_LANDMARKS)[1]
    assert np.abs(tinted[0][..., 2].astype(int) - tinted[0][..., 0]).max() > 50  # the net colours grey
    faces = Restorer(**kwargs, color_match=True).enhance(grey, weight=1, landmarks=BLAKE_LANDMARKS)[1]
    for face in faces:
        assert np.array_equal(face[..., 0], face[..., 1]) and np.array_equal(face[..., 1], face[..., 2])


def test_match_colour_refuses_mismatched_faces():
    with pytest.raises(ValueError, match="one size"):
        match_colour(np.zeros((64, 64, 3), np.uint8), np.zeros((32, 32, 3), np.uint8))


# --------------------------------------------------------------------------- identity


def test_identity_score_and_min_identity_keep_the_input_face(blake, arcface_file):
    kwargs = dict(upscale=1, detector=NoDetector(), parser=None, identity_model=str(arcface_file))
    same = Restorer(model=IdentityFaceNet(), **kwargs).restore(blake, weight=1, landmarks=BLAKE_LANDMARKS)
    assert [f.identity for f in same.faces] == pytest.approx([1.0, 1.0], abs=1e-5)

    changed = Restorer(model=InvertNet(), **kwargs).restore(blake, weight=1, landmarks=BLAKE_LANDMARKS)
    scores = [f.identity for f in changed.faces]
    assert all(-1 <= s < 0.99 for s in scores)
    assert not changed.notes
    # A threshold between the two faces' scores keeps exactly the lower-scoring face's input.
    low = int(np.argmin(scores))
    threshold = (min(scores) + max(scores)) / 2 if max(scores) - min(scores) > 1e-3 else max(scores) + 1e-3
    kept = Restorer(model=InvertNet(), min_identity=threshold, **kwargs).restore(
        blake, weight=1, landmarks=BLAKE_LANDMARKS)
    assert np.array_equal(kept.restored[low], kept.cropped[low])
    assert kept.faces[low].weight == 0 and kept.faces[low].identity == 1.0
    assert "kept the input face" in kept.faces[low].notes[0] and len(kept.notes) == sum(
        s < threshold for s in scores)
    for i, s in enumerate(scores):
        if s >= threshold:
            assert np.array_equal(kept.restored[i], changed.restored[i]) and kept.faces[i].weight == 1
    assert not np.array_equal(kept.image, changed.image)


def test_min_identity_can_step_down_the_weight(blake, arcface_file):
    kwargs = dict(upscale=1, detector=NoDetector(), parser=None, identity_model=str(arcface_file))
    full = Restorer(model=InvertNet(), **kwargs).restore(blake, weight=1, landmarks=BLAKE_LANDMARKS[:1])
    score = full.faces[0].identity
    threshold = (score + 1) / 2
    lower = Restorer(model=InvertNet(), min_identity=threshold, identity_fallback="lower", **kwargs).restore(
        blake, weight=1, landmarks=BLAKE_LANDMARKS[:1])
    record = lower.faces[0]
    assert record.weight < 1 and record.identity >= threshold
    assert ("used weight" in record.notes[0]) == (record.weight > 0)
    expected = Restorer.blend(full.restored[0], full.cropped[0], record.weight) if record.weight > 0 \
        else full.cropped[0]
    assert np.array_equal(lower.restored[0], expected)


def test_identity_score_agrees_with_the_deg_metric(arcface_file):
    """The score is the cosine of the angle the project's Deg metric (the authors' script) gives."""
    import math

    from facerestore.metrics.identity import IdentityScorer as DegScorer
    from facerestore.models import load
    from facerestore.pipeline.identity import IdentityScorer

    net = load(arcface_file, purpose=Purpose.IDENTITY).model
    rng = np.random.default_rng(0)
    face = cv2.GaussianBlur(rng.integers(0, 256, (512, 512, 3), dtype=np.uint8), (31, 31), 0)
    other = np.clip(face.astype(int) + rng.integers(-40, 40, face.shape), 0, 255).astype(np.uint8)
    cosine = IdentityScorer(net).scores([face], [other])[0]
    angle = DegScorer(net).angle(cv2.cvtColor(other, cv2.COLOR_BGR2GRAY), cv2.cvtColor(face, cv2.COLOR_BGR2GRAY))
    assert 1 < angle < 179  # a pair that says something
    assert math.degrees(math.acos(cosine)) == pytest.approx(angle, abs=1e-3)
    assert IdentityScorer(net).embed([face]).shape == (1, 512)


def test_identity_unavailable_is_said_once_and_the_run_goes_on(blake, tmp_path, monkeypatch):
    monkeypatch.setenv(zoo.CACHE_ENV, str(tmp_path / "empty-cache"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the Restorer collects notes; it warns about nothing
        quiet = Restorer(model=IdentityFaceNet(), upscale=1, detector=NoDetector(), parser=None,
                         identity_model="auto")
        assert quiet.identity is None and quiet.notes == []  # auto without --min-identity: nothing to say
        r = Restorer(model=IdentityFaceNet(), upscale=1, detector=NoDetector(), parser=None, identity_model="auto",
                     min_identity=0.5)
    assert r.identity is None and sum("identity scores are unavailable" in n for n in r.notes) == 1
    result = r.restore(blake, landmarks=BLAKE_LANDMARKS)
    assert [f.identity for f in result.faces] == [None, None]


def test_min_identity_without_scores_is_refused_early():
    with pytest.raises(OptionsError, match="--min-identity"):
        RestoreOptions(min_identity=0.5, identity_model="none").validate()
    with pytest.raises(OptionsError, match="--min-identity: needs identity scores"):
        RestoreOptions(min_identity=0.5).validate()  # no scores by default from Python
    with pytest.raises(OptionsError, match="--min-identity: must be between -1 and 1"):
        RestoreOptions(min_identity=2.0, identity_model="auto").validate()
    assert RestoreOptions(min_identity=0.5, identity_model="auto").validate().identity_model == "auto"


# --------------------------------------------------------------------------- detector settings


def _photo(shared_data: Path, name: str, scale: float = 1.0) -> np.ndarray:
    img = cv2.imread(str(shared_data / "photos" / name))
    return img if scale == 1 else cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def test_det_threshold_changes_what_mtcnn_finds(shared_data):
    small = _photo(shared_data, "10045.png", 0.2)  # three faces of 11-14 px, one scored 0.94
    assert len(load_detector("mtcnn").detect(small)) == 2
    assert len(load_detector("mtcnn", conf_threshold=0.5).detect(small)) == 3
    assert len(load_detector("mtcnn", conf_threshold=0.995).detect(small)) == 0
    counts = [len(load_detector("mtcnn", conf_threshold=0.999).detect(_photo(shared_data, n)))
              for n in ("00.jpg", "10045.png", "Blake_Lively.jpg")]
    assert counts == [2, 1, 0]  # of 2, 3, 2 at the default 0.97


def test_min_face_changes_what_mtcnn_finds(shared_data):
    assert len(load_detector("mtcnn", min_face=100).detect(_photo(shared_data, "00.jpg"))) == 2  # 143-152 px
    assert len(load_detector("mtcnn", min_face=100).detect(_photo(shared_data, "10045.png"))) == 0  # 66-72 px
    small = _photo(shared_data, "10045.png", 0.2)
    assert len(load_detector("mtcnn").detect(small)) == 2
    assert len(load_detector("mtcnn", min_face=10).detect(small)) == 3  # the pyramid starts lower


def test_retinaface_takes_the_same_settings():
    from facerestore.archs.retinaface import RetinaFace

    torch.manual_seed(0)
    net = RetinaFace(network_name="mobile0.25")
    img = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    everything = load_detector(net, conf_threshold=0.0).detect(img)
    assert len(everything) > 0
    sides = np.minimum(everything[:, 2] - everything[:, 0], everything[:, 3] - everything[:, 1])
    cut = int(sides.max())  # keeps the largest box(es) only
    assert sides.min() < cut
    big = load_detector(net, conf_threshold=0.0, min_face=cut).detect(img)
    assert 0 < len(big) < len(everything) and (np.minimum(big[:, 2] - big[:, 0], big[:, 3] - big[:, 1]) >= cut).all()
    middle = float(np.median(everything[:, 4]))
    assert (load_detector(net, conf_threshold=middle).detect(img)[:, 4] > middle).all()


def test_unknown_detector_names_the_detectors():
    with pytest.raises(OptionsError, match="auto, mtcnn, retinaface-resnet50, retinaface-mobilenet0.25"):
        RestoreOptions(detector="nonsense").validate()
    with pytest.raises(OptionsError, match="not a face detector"):
        RestoreOptions(detector="v1.4").validate()  # a zoo name, but not a detector


# --------------------------------------------------------------------------- landmark sanity check


def _row(points, box=None) -> np.ndarray:
    points = np.asarray(points, np.float64)
    if box is None:
        (x1, y1), (x2, y2) = points.min(0) - 30, points.max(0) + 30
        box = (x1, y1, x2, y2)
    return np.concatenate([box, [0.99], points.reshape(-1)])


def test_plausible_faces_pass_at_any_rotation():
    from facerestore.face.align import FFHQ_TEMPLATE_512

    centre = FFHQ_TEMPLATE_512.mean(0)
    for degrees in (0, 30, 90, 150, -120):
        t = np.deg2rad(degrees)
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        assert implausibility(_row((FFHQ_TEMPLATE_512 - centre) @ rot.T + centre)) is None, degrees


@pytest.mark.parametrize("points, reason", [
    ([[100, 200], [160, 200], [130, 170], [105, 140], [155, 140]], "mouth not below"),  # upside down
    ([[100, 100], [160, 100], [130, 190], [105, 140], [155, 140]], "nose not between"),
    ([[100, 100], [101, 100], [130, 130], [105, 160], [155, 160]], "eyes 1 px apart"),
    ([[100, 100], [160, 100], [130, 130], [105, 1000], [155, 1000]], "mouth too far"),
])
def test_implausible_landmarks_are_named(points, reason):
    assert reason in implausibility(_row(points))


def test_landmark_check_drops_a_planted_detection(shared_data):
    """All seven real faces of the photos pass; a planted 'face' with the mouth above the eyes
    (what a detector firing on an eye region gives) is dropped, with a note."""
    mtcnn = load_detector("mtcnn")
    for name in ("00.jpg", "10045.png", "Blake_Lively.jpg"):
        dets = mtcnn.detect(_photo(shared_data, name))
        assert len(split_plausible(dets)[0]) == len(dets), name

    class Planted:
        def detect(self, img, conf_threshold=0.97):
            real = mtcnn.detect(img)
            eye = _row([[300, 330], [340, 330], [320, 300], [305, 290], [335, 290]], box=(280, 270, 360, 350))
            return np.vstack([real, eye.astype(np.float32)])

    img = _photo(shared_data, "Blake_Lively.jpg")
    r = Restorer(model=IdentityFaceNet(), upscale=1, detector=Planted(), parser=None)
    dets, notes = r.detect_faces(img)
    assert len(dets) == 2 and len(notes) == 1 and "mouth not below the eyes" in notes[0]
    result = r.restore(img, paste_back=False)
    assert len(result.faces) == 2 and result.notes == notes
    off = Restorer(model=IdentityFaceNet(), upscale=1, detector=Planted(), parser=None, landmark_check=False)
    assert len(off.restore(img, paste_back=False).faces) == 3


# --------------------------------------------------------------------------- CLI and report


def _restore(inp: Path, out: Path, ckpt: Path, *extra: str) -> int:
    return cli.main(["restore", "-i", str(inp), "-o", str(out), "--model", str(ckpt), "--detector", "mtcnn",
                     "--parser", "none", "--bg_upsampler", "none", "-s", "1", *extra])


def _small_photos(shared_data: Path, folder: Path) -> Path:
    """Two photos at half size: the CLI tests stay quick."""
    folder.mkdir()
    for name in ("00.jpg", "Blake_Lively.jpg"):
        cv2.imwrite(str(folder / f"{Path(name).stem}.png"), _photo(shared_data, name, 0.5))
    return folder


def test_cli_detector_flags_change_what_is_restored(shared_data, tiny_checkpoint, tmp_path, capsys):
    photos = tmp_path / "in"
    photos.mkdir()
    cv2.imwrite(str(photos / "small.png"), _photo(shared_data, "10045.png", 0.2))
    assert _restore(photos, tmp_path / "a", tiny_checkpoint) == 0
    assert "2 faces" in capsys.readouterr().out
    assert _restore(photos, tmp_path / "b", tiny_checkpoint, "--det-threshold", "0.5") == 0
    assert "3 faces" in capsys.readouterr().out
    assert _restore(photos, tmp_path / "c", tiny_checkpoint, "--min-face", "14") == 0
    assert "0 faces" in capsys.readouterr().out


def test_cli_report_validates_against_its_schema(shared_data, tiny_checkpoint, arcface_file, tmp_path, capsys,
                                                 monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "arcface_resnet18.pth").write_bytes(arcface_file.read_bytes())  # found by "auto"
    photos = _small_photos(shared_data, tmp_path / "in")
    report = tmp_path / "records" / "run.json"
    assert _restore(photos, tmp_path / "out", tiny_checkpoint, "--report", str(report), "--color-match") == 0
    out = capsys.readouterr().out
    assert "identity score" in out and f"report in {report}" in out
    data = json.loads(report.read_text())
    validate(data, json.loads((REPO / "docs" / "report-schema.json").read_text()))
    assert data["run"]["options"]["color_match"] is True
    assert data["run"]["models"]["identity"]["sha256"] == zoo.sha256_of(cache / "arcface_resnet18.pth")
    assert data["run"]["models"]["model"]["sha256"] == zoo.sha256_of(tiny_checkpoint)
    files = {Path(f["path"]).name: f for f in data["files"]}
    assert files["00.png"]["size_bytes"] == (photos / "00.png").stat().st_size
    assert [len(f["faces"]) for f in data["files"]] == [f["face_count"] for f in data["files"]] == [2, 1]
    for f in data["files"]:
        for face in f["faces"]:
            assert -1 <= face["identity"] <= 1 and face["weight"] == 0.5 and len(face["landmarks"]) == 5
            assert Path(face["outputs"]["restored_faces"]).is_file()
    assert not [p for p in report.parent.iterdir() if p.name != "run.json"]  # no temp files left


def test_cli_min_identity_keeps_input_faces(shared_data, tiny_checkpoint, arcface_file, tmp_path, capsys):
    photos = _small_photos(shared_data, tmp_path / "in")
    args = ("--identity-model", str(arcface_file), "-w", "1")
    assert _restore(photos, tmp_path / "plain", tiny_checkpoint, *args) == 0
    assert _restore(photos, tmp_path / "kept", tiny_checkpoint, *args, "--min-identity", "1") == 0
    err = capsys.readouterr().err
    n = len(list((tmp_path / "kept" / "restored_faces").iterdir()))
    assert err.count("is below --min-identity 1; kept the input face") == n == 3
    for face in sorted((tmp_path / "kept" / "restored_faces").iterdir()):
        crop = cv2.imread(str(tmp_path / "kept" / "cropped_faces" / face.name))
        assert np.array_equal(cv2.imread(str(face)), crop)  # the input face, exactly
        assert not np.array_equal(cv2.imread(str(tmp_path / "plain" / "restored_faces" / face.name)), crop)
    assert _restore(photos, tmp_path / "low", tiny_checkpoint, *args, "--min-identity", "-1") == 0
    for img in (tmp_path / "plain" / "restored_imgs").iterdir():
        assert np.array_equal(cv2.imread(str(img)), cv2.imread(str(tmp_path / "low" / "restored_imgs" / img.name)))


def test_cli_says_once_that_identity_is_unavailable(shared_data, tiny_checkpoint, tmp_path, capsys):
    photos = _small_photos(shared_data, tmp_path / "in")
    assert _restore(photos, tmp_path / "out", tiny_checkpoint) == 0
    assert "identity" not in capsys.readouterr().err  # not asked for: not mentioned
    assert _restore(photos, tmp_path / "out2", tiny_checkpoint, "--min-identity", "0.5") == 0
    assert capsys.readouterr().err.count("identity scores are unavailable") == 1


def test_model_hashes_are_cached_by_path_mtime_and_size(tmp_path, monkeypatch):
    from facerestore.pipeline import report

    f = tmp_path / "w.pth"
    f.write_bytes(b"a" * 1000)
    calls = []
    real = zoo.sha256_of
    monkeypatch.setattr(zoo, "sha256_of", lambda p: calls.append(p) or real(p))
    monkeypatch.setattr(report, "_memory", {})
    first = report.file_sha256(f)
    monkeypatch.setattr(report, "_memory", {})  # a new process: only the disk cache is left
    assert report.file_sha256(f) == first and len(calls) == 1
    f.write_bytes(b"b" * 1001)
    assert report.file_sha256(f) != first and len(calls) == 2


# --------------------------------------------------------------------------- a small JSON Schema check


def validate(value, schema, where="$"):
    """The subset of JSON Schema that docs/report-schema.json uses (type, properties, required,
    additionalProperties, items, minItems/maxItems, minimum/maximum, enum, const, $ref to $defs).
    jsonschema is used instead when installed."""
    try:
        import jsonschema
    except ImportError:
        return _validate(value, schema, schema, where)
    jsonschema.validate(value, schema)


def _validate(value, schema, root, where):
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].split("/")[-1]]
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        checks = {"object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
                  "string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
                  "null": lambda v: v is None,
                  "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
                  "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)}
        assert any(checks[t](value) for t in types), f"{where}: {value!r} is not {types}"
    if "const" in schema:
        assert value == schema["const"], f"{where}: {value!r} != {schema['const']!r}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: {value!r} not in {schema['enum']}"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        assert value >= schema.get("minimum", value) and value <= schema.get("maximum", value), where
    if isinstance(value, dict):
        for key in schema.get("required", ()):
            assert key in value, f"{where}: missing {key}"
        props = schema.get("properties", {})
        for key, item in value.items():
            if key in props:
                _validate(item, props[key], root, f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                raise AssertionError(f"{where}: unexpected {key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                _validate(item, schema["additionalProperties"], root, f"{where}.{key}")
    if isinstance(value, list):
        assert len(value) >= schema.get("minItems", 0) and len(value) <= schema.get("maxItems", len(value)), where
        if "items" in schema:
            for i, item in enumerate(value):
                _validate(item, schema["items"], root, f"{where}[{i}]")


def test_sharded_runs_write_one_report_each(shared_data, tiny_checkpoint, tmp_path):
    photos = tmp_path / "in"
    photos.mkdir()
    for i in range(2):
        cv2.imwrite(str(photos / f"small{i}.png"), _photo(shared_data, "10045.png", 0.2))
    for shard in ("0/2", "1/2"):
        assert _restore(photos, tmp_path / "out", tiny_checkpoint, "--shard", shard,
                        "--report", str(tmp_path / "run.json")) == 0
    reports = sorted(p.name for p in tmp_path.glob("run*.json"))
    assert reports == ["run.shard0-of2.json", "run.shard1-of2.json"]
    names = [Path(json.loads((tmp_path / r).read_text())["files"][0]["path"]).name for r in reports]
    assert sorted(names) == ["small0.png", "small1.png"]


def test_identity_model_by_zoo_name_and_a_wrong_file(arcface_file, tiny_checkpoint, tmp_path):
    from facerestore.models import CheckpointError
    from facerestore.pipeline.identity import load_identity_scorer

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "arcface_resnet18.pth").write_bytes(arcface_file.read_bytes())
    scorer = load_identity_scorer("arcface-resnet18", allow_download=False)
    assert Path(scorer.source) == cache / "arcface_resnet18.pth"
    with pytest.raises(CheckpointError, match="identity model"):
        load_identity_scorer(str(tiny_checkpoint))
