"""Image files: sizes from the header (JPEG, PNG) or by decoding, and errors that name the file."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engine.io.images import ImageError, image_size, read_image, write_jpeg


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".bmp"])
def test_image_size_is_the_decoded_size(tmp_path, suffix):
    rgb = np.random.default_rng(0).integers(0, 255, (37, 53, 3), dtype=np.uint8)
    path = tmp_path / f"a{suffix}"
    if suffix == ".jpg":
        write_jpeg(path, rgb)
    else:
        cv2.imwrite(str(path), rgb)
    assert image_size(path) == (53, 37) == read_image(path).shape[1::-1]


def test_a_progressive_jpeg_with_metadata_before_its_frame(tmp_path):
    path = tmp_path / "p.jpg"
    ok, buf = cv2.imencode(".jpg", np.zeros((20, 30, 3), np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    data = buf.tobytes()
    comment = b"\xff\xfe" + (2 + 5000).to_bytes(2, "big") + b"x" * 5000  # a long COM segment first
    path.write_bytes(data[:2] + comment + data[2:])
    assert ok and image_size(path) == (30, 20)


def test_missing_and_corrupt_files_are_named(tmp_path):
    with pytest.raises(ImageError, match="nowhere.jpg: image file not found"):
        image_size(tmp_path / "nowhere.jpg")
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="junk.jpg: not a decodable image"):
        image_size(tmp_path / "junk.jpg")
