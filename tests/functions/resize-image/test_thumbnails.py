"""resize-image's Pillow part alone: sizes, orientation, stripped metadata, and what it refuses."""

from __future__ import annotations

import io

import pytest
from imagefiles import jpeg, png_bomb, png_rgba, truncated_jpeg
from order_functions import load_function
from PIL import Image

import kfaas

fn = load_function("resize-image")


def _open(body: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(body))
    img.load()
    return img


def test_two_sizes_aspect_kept_orientation_applied_metadata_stripped() -> None:
    # stored 1200x800 with EXIF orientation 6: shown rotated 90 degrees, so 800 wide and 1200 high
    thumbs = fn.make_thumbnails(jpeg(1200, 800, orientation=6), "photos/cat.jpg")
    assert [(t.key, t.width, t.height, t.content_type) for t in thumbs] == [
        ("512/photos/cat.jpg", 341, 512, "image/jpeg"),
        ("128/photos/cat.jpg", 85, 128, "image/jpeg"),
    ]
    for thumb in thumbs:
        img = _open(thumb.body)
        assert img.format == "JPEG"
        assert img.size == (thumb.width, thumb.height)
        assert dict(img.getexif()) == {}  # no orientation left to apply twice, no camera
        assert "icc_profile" not in img.info
        assert "exif" not in img.info


def test_an_upright_photo_keeps_its_aspect() -> None:
    thumbs = fn.make_thumbnails(jpeg(1200, 800), "a.jpeg")
    assert [(t.key, t.width, t.height) for t in thumbs] == [("512/a.jpeg", 512, 341), ("128/a.jpeg", 128, 85)]


def test_transparency_stays_png() -> None:
    thumbs = fn.make_thumbnails(png_rgba(600, 300), "logo.png")
    assert [(t.key, t.width, t.height, t.content_type) for t in thumbs] == [
        ("512/logo.png", 512, 256, "image/png"),
        ("128/logo.png", 128, 64, "image/png"),
    ]
    assert _open(thumbs[0].body).mode == "RGBA"


def test_a_small_image_is_not_enlarged() -> None:
    thumbs = fn.make_thumbnails(jpeg(100, 50), "tiny.jpg")
    assert {(t.width, t.height) for t in thumbs} == {(100, 50)}


def test_a_png_bomb_is_refused_without_decoding() -> None:
    with pytest.raises(kfaas.InvalidEvent, match="decompression bomb"):
        fn.make_thumbnails(png_bomb(), "bomb.png")


def test_between_once_and_twice_the_limit_pillow_only_warns_and_that_is_escalated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)
    monkeypatch.setattr(fn, "MAX_IMAGE_PIXELS", 10**9)  # the function's own check out of the way
    body = png_rgba(400, 300)  # 120,000 pixels: Pillow's warning zone
    with pytest.raises(kfaas.InvalidEvent, match="decompression bomb"):
        fn.make_thumbnails(body, "big.png")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"just some text, not a picture", "not an image Pillow can read"),
        (truncated_jpeg(), "cannot be decoded"),
        (b"", "not an image Pillow can read"),
    ],
)
def test_broken_files_are_refused_with_the_reason(body: bytes, reason: str) -> None:
    with pytest.raises(kfaas.InvalidEvent, match=reason):
        fn.make_thumbnails(body, "x.jpg")


def test_a_format_outside_the_list_is_refused() -> None:
    buf = io.BytesIO()
    Image.new("RGB", (10, 10)).save(buf, "BMP")
    with pytest.raises(kfaas.InvalidEvent, match="BMP images are not resized"):
        fn.make_thumbnails(buf.getvalue(), "x.bmp")


def test_thumbnail_keys() -> None:
    assert fn.thumbnail_key(128, "a/b.png", "JPEG") == "128/a/b.png.jpg"
    assert fn.thumbnail_key(128, "a/b.JPG", "JPEG") == "128/a/b.JPG"
    assert fn.thumbnail_key(512, "noext", "PNG") == "512/noext.png"
