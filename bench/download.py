"""Image download to shards: img2dataset against the project's shards stage.

Both fetch the same 2,000 photo-like 640x480 JPEGs from nginx on loopback, resize them to
256 (keep_ratio: the smallest side becomes 256), and write webdataset shards of 1,000
samples, with 2 processes. img2dataset runs from its own virtual environment
(`.venv-bench`, created on first use: its pins clash with the project's); nginx is
Debian's, started here on a free port with a config of our own.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from bench.common import BENCH_DIR, REPO, BenchResult, timed
from pipeline.config import load_config
from pipeline.io import mark_done, write_table
from pipeline.layout import RunLayout
from pipeline.record import Pair, pairs_to_table

IMAGES = 2000
BENCH_VENV = REPO / ".venv-bench"
NGINX_CONF = """
worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    server {{
        listen 127.0.0.1:{port};
        root {www};
        location / {{ types {{ image/jpeg jpg; }} }}
    }}
}}
"""


def photo_like(index: int, width: int = 640, height: int = 480) -> Image.Image:
    """A smooth random colour field with noise: compresses like a photo, not a flat fill."""
    rng = np.random.default_rng(index)
    coarse = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    base = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
    noise = rng.normal(0, 12, size=(height, width, 3))
    pixels = np.clip(np.asarray(base, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def make_images(www: Path) -> list[str]:
    folder = www / "img"
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for index in range(IMAGES):
        path = folder / f"{index:05d}.jpg"
        if not path.exists():
            photo_like(index).save(path, quality=90)
        names.append(f"img/{path.name}")
    return names


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_nginx(www: Path, root: Path) -> tuple[subprocess.Popen[bytes], int]:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise FileNotFoundError("nginx not found: apt-get install nginx")
    port = free_port()
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(root=root, port=port, www=www))
    process = subprocess.Popen([nginx, "-c", str(conf), "-p", str(root)])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return process, port
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"nginx exited: see {root / 'error.log'}") from None
            time.sleep(0.05)
    process.terminate()
    process.wait()
    raise RuntimeError(f"nginx did not listen on port {port}: see {root / 'error.log'}")


def ensure_img2dataset() -> Path:
    exe = BENCH_VENV / "bin" / "img2dataset"
    if not exe.exists():
        subprocess.run(["python3", "-m", "venv", str(BENCH_VENV)], check=True)
        pip = [str(BENCH_VENV / "bin" / "pip"), "install", "-q"]
        subprocess.run([*pip, "img2dataset"], check=True)
    return exe


def run_img2dataset(exe: Path, url_list: Path, out: Path) -> None:
    subprocess.run(
        [str(exe), "--url_list", str(url_list), "--input_format", "parquet",
         "--url_col", "url", "--caption_col", "caption", "--output_format", "webdataset",
         "--output_folder", str(out), "--processes_count", "2", "--thread_count", "64",
         "--image_size", "256", "--resize_mode", "keep_ratio",
         "--number_sample_per_shard", "1000", "--enable_wandb", "False"],
        check=True, capture_output=True,
    )  # fmt: skip


def run_ours(urls: list[str], workdir: Path) -> int:
    from pipeline.stages.shards import run_shards

    config = load_config(
        None,
        [f'workdir="{workdir}"', "shards.image_size=256", "shards.resize_mode=keep_ratio",
         "shards.samples_per_shard=1000", "executor.workers=2", "shards.min_image_side=0",
         "net.allow_private=['127.0.0.1']"],
    )  # fmt: skip
    layout = RunLayout(workdir)
    pairs = [Pair(url=url, caption=f"image {i}", source="urllist") for i, url in enumerate(urls)]
    table = pairs_to_table(sorted(pairs, key=lambda p: p.uid))
    write_table(layout.at("curate", "selected", "range-00000.parquet"), table)
    mark_done(layout.curate_dir, "curate")
    return run_shards(config).kept


def run() -> BenchResult:
    www = BENCH_DIR / "www"
    names = make_images(www)
    exe = ensure_img2dataset()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        process, port = start_nginx(www, root)
        try:
            urls = [f"http://127.0.0.1:{port}/{name}" for name in names]
            url_list = root / "urls.parquet"
            captions = [f"image {i}" for i in range(len(urls))]
            pq.write_table(pa.table({"url": urls, "caption": captions}), url_list)
            _, peer_seconds = timed(lambda: run_img2dataset(exe, url_list, root / "i2d"))
            written, ours_seconds = timed(lambda: run_ours(urls, root / "ours"))
        finally:
            process.terminate()
            process.wait()
    if written != IMAGES:
        raise AssertionError(f"ours wrote {written} of {IMAGES} images")
    return BenchResult(
        name="download + resize + shard",
        unit="images",
        items=IMAGES,
        peer="img2dataset",
        peer_seconds=peer_seconds,
        ours_seconds=ours_seconds,
        note="nginx on loopback, 640x480 -> 256 keep_ratio, 2 processes; ours also pHashes",
    )
