"""resize-image: on an object created in ``uploads``, write its thumbnails to ``thumbnails`` (the seed's S3 event).

Consumes ``com.amazonaws.s3.ObjectCreated`` from the bucket source in function.yaml (data: bucket, key, size,
etag, ...). For each size in ``THUMBNAIL_SIZES`` (128 and 512 px) it writes ``<size>/<key>`` to the thumbnails
bucket: the longer side that many pixels, the aspect kept, the EXIF orientation applied, no metadata (EXIF,
ICC, text chunks) carried over; JPEG, or PNG for an image with transparency (``.jpg``/``.png`` appended when
the key does not end so).

Refused with the reason (``kfaas.InvalidEvent``: a 422, so the broker dead-letters it at once, the reason in
``knativeerrordata``): an object larger than ``MAX_OBJECT_BYTES``, anything Pillow cannot identify, a format
outside ``IMAGE_FORMATS``, more pixels than ``MAX_IMAGE_PIXELS`` (Pillow's decompression-bomb check, its
warning escalated to an error so the limit is exact), a truncated or corrupt file. Memory stays bounded: the
size is checked before the download, the pixel count from the header before anything is decoded, and a JPEG
is decoded at a reduced scale (libjpeg's DCT scaling, through ``Image.thumbnail``).

Done once per content: the work runs inside ``ctx.once("resize-image|<bucket>/<key>|<etag>")`` (a unique-key
insert in MongoDB), so a replayed notification, or the same bytes uploaded again, writes nothing. The object
is read with ``If-Match: <etag>``: when it was replaced since the event, the newer upload's own event makes
its thumbnails and this one is skipped.
"""

from __future__ import annotations

import asyncio
import io
import os
import warnings
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from cloudevents.http import CloudEvent
from PIL import Image, ImageOps, UnidentifiedImageError

import kfaas

CREATED = "com.amazonaws.s3.ObjectCreated"

# Read once at import (the process's start-up), never inside the handler.
THUMBNAILS_BUCKET = os.environ.get("THUMBNAILS_BUCKET", "thumbnails")
THUMBNAIL_SIZES = tuple(int(s) for s in os.environ.get("THUMBNAIL_SIZES", "128,512").split(","))
MAX_OBJECT_BYTES = int(os.environ.get("MAX_OBJECT_BYTES", str(40 * 1024 * 1024)))
MAX_IMAGE_PIXELS = int(os.environ.get("MAX_IMAGE_PIXELS", str(25_000_000)))
IMAGE_FORMATS = frozenset(os.environ.get("IMAGE_FORMATS", "JPEG,PNG,WEBP,GIF").upper().split(","))
JPEG_QUALITY = int(os.environ.get("JPEG_QUALITY", "85"))
S3_ENDPOINT_URL = os.environ.get("S3_ENDPOINT_URL") or None  # None: AWS's own endpoint

# Pillow's own bomb check uses this; above it Image.open warns, above twice it raises (escalated below).
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

# One client for the process (boto3 clients are thread-safe; creating one is not): path-style addressing,
# which every S3-compatible store serves; checksums only where the API requires them, since stores differ
# in the flexible checksums they accept.
s3 = boto3.session.Session().client(
    "s3",
    endpoint_url=S3_ENDPOINT_URL,
    region_name=os.environ.get("AWS_REGION", "us-east-1"),
    config=Config(
        s3={"addressing_style": "path"},
        retries={"max_attempts": 3, "mode": "standard"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=5,
        read_timeout=30,
    ),
)


@dataclass(frozen=True)
class Thumbnail:
    key: str
    body: bytes
    content_type: str
    width: int
    height: int


class Changed(Exception):
    """The object's ETag is no longer the event's: it was replaced (or removed) since."""


def thumbnail_key(size: int, key: str, fmt: str) -> str:
    ext = ".png" if fmt == "PNG" else ".jpg"
    lower = key.lower()
    keep = lower.endswith(ext) or (ext == ".jpg" and lower.endswith(".jpeg"))
    return f"{size}/{key}" if keep else f"{size}/{key}{ext}"


def make_thumbnails(body: bytes, key: str, sizes: tuple[int, ...] = THUMBNAIL_SIZES) -> list[Thumbnail]:
    """The thumbnails of one image (pure Pillow, no I/O); ``kfaas.InvalidEvent`` names what is wrong."""
    with warnings.catch_warnings():
        # between 1x and 2x MAX_IMAGE_PIXELS Pillow only warns: make it the error it is above 2x
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(body)) as img:
                if img.format not in IMAGE_FORMATS:
                    raise kfaas.InvalidEvent(
                        f"{key}: {img.format} images are not resized (accepted: {', '.join(sorted(IMAGE_FORMATS))})"
                    )
                return _resize(img, key, sizes)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise kfaas.InvalidEvent(f"{key}: refused as a decompression bomb: {exc}") from None
        except UnidentifiedImageError:
            raise kfaas.InvalidEvent(f"{key}: not an image Pillow can read") from None
        except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data, bad headers
            raise kfaas.InvalidEvent(f"{key}: the image cannot be decoded: {exc}") from None


def _resize(img: Image.Image, key: str, sizes: tuple[int, ...]) -> list[Thumbnail]:
    if img.width * img.height > MAX_IMAGE_PIXELS:  # before any decoding (Pillow checks only above 1x)
        raise kfaas.InvalidEvent(
            f"{key}: refused as a decompression bomb: {img.width}x{img.height} is more than "
            f"MAX_IMAGE_PIXELS ({MAX_IMAGE_PIXELS}) pixels"
        )
    orientation = img.getexif().get(0x0112, 1)  # EXIF Orientation, read before the pixels change
    alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    fmt = "PNG" if alpha else "JPEG"
    work = img
    work.thumbnail((max(sizes), max(sizes)), Image.Resampling.LANCZOS, reducing_gap=2.0)
    work = _orient(work.convert("RGBA" if alpha else "RGB"), orientation)
    out = []
    for size in sorted(sizes, reverse=True):
        thumb = work.copy()
        thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        if fmt == "JPEG":
            thumb.save(buf, "JPEG", quality=JPEG_QUALITY, optimize=True)  # no exif/icc_profile: stripped
        else:
            thumb.save(buf, "PNG", optimize=True)
        out.append(
            Thumbnail(thumbnail_key(size, key, fmt), buf.getvalue(), f"image/{fmt.lower()}", *thumb.size)
        )
    return out


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orient(img: Image.Image, orientation: Any) -> Image.Image:
    """ImageOps.exif_transpose's mapping, applied to the (small) resized image with the original's tag."""
    method = _TRANSPOSE.get(orientation) if isinstance(orientation, int) else None
    return img.transpose(method) if method is not None else ImageOps.exif_transpose(img) or img


def fetch(bucket: str, key: str, etag: str | None) -> bytes:
    """The object's bytes, at most MAX_OBJECT_BYTES of them; ``Changed`` when its ETag moved on."""
    args: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if etag:
        args["IfMatch"] = f'"{etag}"'
    try:
        answer = s3.get_object(**args)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("PreconditionFailed", "412", "NoSuchKey", "404"):
            raise Changed(code) from None
        raise
    length = int(answer.get("ContentLength") or 0)
    stream = answer["Body"]
    try:
        if length > MAX_OBJECT_BYTES:
            raise kfaas.InvalidEvent(
                f"{key}: {length} bytes, more than MAX_OBJECT_BYTES ({MAX_OBJECT_BYTES})"
            )
        body: bytes = stream.read(MAX_OBJECT_BYTES + 1)
    finally:
        stream.close()
    if len(body) > MAX_OBJECT_BYTES:
        raise kfaas.InvalidEvent(f"{key}: more than MAX_OBJECT_BYTES ({MAX_OBJECT_BYTES}) bytes")
    return body


def store(thumb: Thumbnail, source_bucket: str, source_key: str, etag: str | None) -> None:
    s3.put_object(
        Bucket=THUMBNAILS_BUCKET,
        Key=thumb.key,
        Body=thumb.body,
        ContentType=thumb.content_type,
        Metadata={"source": f"{source_bucket}/{source_key}", "source-etag": etag or ""},
    )


def parse(data: Any) -> tuple[str, str, int | None, str | None]:
    if not isinstance(data, dict):
        raise kfaas.InvalidEvent("com.amazonaws.s3.ObjectCreated needs a JSON object as data")
    bucket, key, size, etag = data.get("bucket"), data.get("key"), data.get("size"), data.get("etag")
    if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
        raise kfaas.InvalidEvent("com.amazonaws.s3.ObjectCreated data needs bucket and key")
    return bucket, key, size if isinstance(size, int) else None, etag if isinstance(etag, str) else None


def resize(bucket: str, key: str, etag: str | None) -> list[Thumbnail]:
    """Read, resize and write (blocking: boto3 and Pillow; run in a worker thread)."""
    thumbs = make_thumbnails(fetch(bucket, key, etag), key)
    for thumb in thumbs:
        store(thumb, bucket, key, etag)
    return thumbs


@kfaas.cloud_event
async def handle(event: CloudEvent, ctx: kfaas.Context) -> None:
    if event["type"] != CREATED:
        raise kfaas.InvalidEvent(f"resize-image does not handle events of type {event['type']!r}")
    bucket, key, size, etag = parse(event.data)
    if bucket == THUMBNAILS_BUCKET:
        raise kfaas.InvalidEvent(f"{key}: an object of the thumbnails bucket itself is not resized (a loop)")
    if size is not None and size > MAX_OBJECT_BYTES:
        raise kfaas.InvalidEvent(f"{key}: {size} bytes, more than MAX_OBJECT_BYTES ({MAX_OBJECT_BYTES})")
    try:
        async with ctx.once(f"resize-image|{bucket}/{key}|{etag or event['id']}"):
            thumbs = await asyncio.to_thread(resize, bucket, key, etag)
    except kfaas.AlreadyDone:
        ctx.log.info("thumbnails of %s/%s (etag %s) already made", bucket, key, etag)
        return
    except Changed as exc:
        ctx.log.info(
            "%s/%s changed since the event (%s): its newer event makes the thumbnails", bucket, key, exc
        )
        return
    ctx.log.info(
        "thumbnails of %s/%s: %s", bucket, key, ", ".join(f"{t.key} {t.width}x{t.height}" for t in thumbs)
    )
