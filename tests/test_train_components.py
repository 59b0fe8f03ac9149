"""Eye/mouth boxes from our own detector, in the official landmark-file layout."""
from __future__ import annotations

import shutil

import cv2
import numpy as np

from facerestore import cli
from facerestore.face.align import FFHQ_TEMPLATE_512
from facerestore.train.components import boxes_from_landmarks
from facerestore.train.dataset import TEMPLATE_COMPONENTS_512, component_locations, load_component_file


def test_template_landmarks_give_the_template_boxes():
    boxes = boxes_from_landmarks(FFHQ_TEMPLATE_512, 512)
    for part, (x, y, half) in TEMPLATE_COMPONENTS_512.items():
        assert np.allclose(boxes[part], [x, y, half], atol=1.0), part
    # and they scale with the image: the same face at 256 px gives the same 512-px boxes
    assert np.allclose(boxes_from_landmarks(np.asarray(FFHQ_TEMPLATE_512) / 2, 256)["mouth"], boxes["mouth"])
    # a non-square image is resized to a square for training: each axis scales on its own
    wide = np.asarray(FFHQ_TEMPLATE_512) * [2.0, 1.0]
    assert np.allclose(boxes_from_landmarks(wide, (1024, 512))["mouth"][:2], boxes["mouth"][:2])


def test_component_file_from_detected_faces(shared_data, tmp_path):
    root = tmp_path / "faces"
    root.mkdir()
    for i, src in enumerate(sorted((shared_data / "aligned").iterdir())[:2]):
        shutil.copy(src, root / f"{i:05d}.png")
    cv2.imwrite(str(root / "00002.png"), np.full((512, 512, 3), 128, np.uint8))  # no face here
    out = tmp_path / "boxes.pth"
    assert cli.main(["components", str(root), "-o", str(out)]) == 0

    boxes = load_component_file(out)  # loads with weights_only, as training reads it
    assert sorted(boxes) == ["00000000", "00000001", "00000002"]
    for key in ("00000000", "00000001"):  # aligned faces: close to the template, not equal to it
        for part, (x, y, _) in TEMPLATE_COMPONENTS_512.items():
            assert abs(boxes[key][part][0] - x) < 20 and abs(boxes[key][part][1] - y) < 20
        assert not np.allclose(boxes[key]["left_eye"], TEMPLATE_COMPONENTS_512["left_eye"])
    assert np.allclose(boxes["00000002"]["mouth"], TEMPLATE_COMPONENTS_512["mouth"])  # fallback
    eye, _, mouth = component_locations(boxes["00000000"], False, 512, 1.4)
    assert eye[2] > eye[0] and mouth[3] > mouth[1]


def test_components_command_refuses_a_missing_folder(tmp_path, capsys):
    assert cli.main(["components", str(tmp_path / "nope"), "-o", str(tmp_path / "b.pth")]) == 2
    assert "is not a folder" in capsys.readouterr().err
