"""resize-image benchmark: thumbnails of a 2-megapixel JPEG, the function against Pillow alone, same run.

    eval "$(scripts/services env)"   # RabbitMQ, FerretDB and versitygw from scripts/services up
    .venv/bin/python bench/thumbnails.py [--images 40] [--cpu-rounds 30] [--quiet]

(a) CPU time per image: resize-image's ``make_thumbnails`` (open, bomb checks, EXIF orientation, 512 and
128 px, JPEG encode without metadata) against Pillow alone doing the same work the plain way (``Image.open``,
``ImageOps.exif_transpose``, ``thumbnail`` to 512 and to 128, ``save`` JPEG), alternating the two in one
process, ``time.process_time`` per call. Target: the function within 1.2x of Pillow alone.

(b) Thumbnails per second end to end on real servers: ``--images`` uploads of the same 2 MP JPEG under new
keys to versitygw → its S3 event records on RabbitMQ → the dev broker's bucket source → the trigger →
one ``kfaas serve`` process of resize-image → 2 thumbnails written back to versitygw. Timed from the first
upload to the last thumbnail present. Once with trigger parallelism 1 (one image at a time), once with the
function's own (function.yaml, 2).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "functions" / "resize-image"
WIDTH, HEIGHT = 1632, 1224  # 1.998 MP, a 4:3 phone photo


def photo() -> bytes:
    """A 2 MP JPEG with detail (noise over a gradient, so the codec has real work) and an EXIF orientation."""
    from PIL import Image

    base = Image.linear_gradient("L").resize((WIDTH, HEIGHT)).convert("RGB")
    noise = Image.effect_noise((WIDTH, HEIGHT), 60).convert("RGB")
    img = Image.blend(base, noise, 0.5)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=90, exif=exif.tobytes())
    return buf.getvalue()


def pillow_alone(body: bytes) -> list[bytes]:
    from PIL import Image, ImageOps

    out = []
    with Image.open(io.BytesIO(body)) as img:
        upright = ImageOps.exif_transpose(img)
        for size in (512, 128):
            thumb = upright.copy()
            thumb.thumbnail((size, size))
            buf = io.BytesIO()
            thumb.save(buf, "JPEG", quality=85, optimize=True)
            out.append(buf.getvalue())
    return out


def load_function() -> Any:
    spec = importlib.util.spec_from_file_location("resize_image_main", FOLDER / "main.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def cpu_bench(body: bytes, rounds: int) -> dict[str, Any]:
    fn = load_function()
    pillow_alone(body), fn.make_thumbnails(body, "warm.jpg")  # warm both
    times: dict[str, list[float]] = {"pillow": [], "function": []}
    for _ in range(rounds):
        for name, call in (
            ("pillow", lambda: pillow_alone(body)),
            ("function", lambda: fn.make_thumbnails(body, "p.jpg")),
        ):
            start = time.process_time()
            call()
            times[name].append(time.process_time() - start)
    med = {k: statistics.median(v) * 1000 for k, v in times.items()}
    return {
        "rounds": rounds,
        "pillow_alone_cpu_ms_median": round(med["pillow"], 2),
        "resize_image_cpu_ms_median": round(med["function"], 2),
        "ratio": round(med["function"] / med["pillow"], 3),
        "target_ratio": 1.2,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def s3_client() -> Any:
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=os.environ["S3_ENDPOINT_URL"],
        region_name=os.environ.get("AWS_REGION", "us-east-1"),
        config=Config(
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            max_pool_connections=16,
        ),
    )


def spawn(env: dict[str, str], log: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "kfaas", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
    )


async def flow_bench(body: bytes, images: int, parallelism: int, logs: Path) -> dict[str, Any]:
    import httpx

    from kfaas.broker import DevBroker
    from kfaas.spec import AppSpec
    from kfaas.spec import load_function as load_description

    s3 = s3_client()
    tag = uuid.uuid4().hex[:8]
    uploads, thumbnails = f"bench-up-{tag}", f"bench-th-{tag}"
    s3.create_bucket(Bucket=uploads)
    s3.create_bucket(Bucket=thumbnails)
    spec = load_description(FOLDER)
    source = spec.sources[0].model_copy(
        update={"bucket": uploads, "exchange": os.environ.get("KFAAS_S3_EXCHANGE", "kfaas.s3-events")}
    )
    trigger = spec.triggers[0].model_copy(
        update={"filter": {**spec.triggers[0].filter, "bucket": uploads}, "parallelism": parallelism}
    )
    spec = spec.model_copy(update={"sources": [source], "triggers": [trigger]})
    port, database = free_port(), f"bench_{tag}"
    env = {
        **os.environ,
        "MONGODB_DATABASE": database,
        "KFAAS_FUNCTION": "resize-image",
        "FUNCTION_SOURCE": str(FOLDER / "main.py"),
        "FUNCTION_TARGET": "handle",
        "FUNCTION_SIGNATURE_TYPE": "cloudevent",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "THUMBNAILS_BUCKET": thumbnails,
        "LOG_LEVEL": "WARNING",
    }
    log = (logs / f"resize-image-p{parallelism}.log").open("ab")
    process = spawn(env, log)
    url = f"http://127.0.0.1:{port}"
    broker = None
    try:
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as client:
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(url + "/health/readiness")).status_code == 200:
                        break
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"resize-image did not start; see {log.name}")
                await asyncio.sleep(0.2)
        namespace = f"bench-{tag}"
        broker = DevBroker(
            AppSpec(functions=[spec], root=FOLDER.parent),
            os.environ["AMQP_URL"],
            lambda _n: url + "/",
            namespace=namespace,
        )
        await broker.start()
        keys = [f"photo-{i:04d}.jpg" for i in range(images)]
        start = time.perf_counter()
        for key in keys:  # uploads in order, as fast as the store takes them
            await asyncio.to_thread(
                s3.put_object, Bucket=uploads, Key=key, Body=body, ContentType="image/jpeg"
            )
        uploaded = time.perf_counter() - start
        want = {f"{size}/{key}" for key in keys for size in (128, 512)}
        deadline = time.monotonic() + 60 + images * 5
        while True:
            listed = await asyncio.to_thread(s3.list_objects_v2, Bucket=thumbnails, MaxKeys=1000)
            have = {o["Key"] for o in listed.get("Contents", [])}
            if want <= have:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(have)} of {len(want)} thumbnails within the time box")
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - start
        return {
            "parallelism": parallelism,
            "images": images,
            "thumbnails": len(want),
            "seconds": round(elapsed, 2),
            "upload_seconds": round(uploaded, 2),
            "images_per_s": round(images / elapsed, 2),
            "thumbnails_per_s": round(len(want) / elapsed, 2),
        }
    finally:
        if broker is not None:
            await broker.stop()
            import aio_pika

            connection = await aio_pika.connect(os.environ["AMQP_URL"])
            async with connection:
                for queue in (
                    f"t.{namespace}.resize-image-uploaded",
                    f"t.{namespace}.resize-image-uploaded.dlq",
                    f"s.{namespace}.resize-image-uploads",
                    f"s.{namespace}.resize-image-uploads.dlq",
                ):
                    with contextlib.suppress(Exception):
                        await (await connection.channel()).queue_delete(queue)
                with contextlib.suppress(Exception):
                    await (await connection.channel()).exchange_delete(f"b.{namespace}.default")
        process.terminate()
        process.wait(30)
        log.close()
        from pymongo import MongoClient

        with MongoClient(os.environ["MONGODB_URL"]) as mongo:
            mongo.drop_database(database)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=40, help="uploads per end-to-end run (bounded: <= 500)")
    parser.add_argument("--cpu-rounds", type=int, default=30)
    parser.add_argument("--quiet", action="store_true", help="one JSON line")
    args = parser.parse_args()
    args.images = max(1, min(args.images, 500))
    body = photo()
    load_before = os.getloadavg()
    result: dict[str, Any] = {
        "image": {"width": WIDTH, "height": HEIGHT, "bytes": len(body), "exif_orientation": 6},
        "cpu": cpu_bench(body, args.cpu_rounds),
    }
    with tempfile.TemporaryDirectory(prefix="kfaas-bench-thumbs-") as logs:
        result["end_to_end"] = [asyncio.run(flow_bench(body, args.images, p, Path(logs))) for p in (1, 2)]
    result["load_avg_before"] = [round(x, 2) for x in load_before]
    result["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    result["cpus"] = os.cpu_count()
    print(json.dumps(result, indent=None if args.quiet else 2))


if __name__ == "__main__":
    main()
