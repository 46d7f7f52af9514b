"""Image download to shards: img2dataset against `python -m pipeline download`, same flags.

Both fetch the same photo-like 640x480 JPEGs from nginx on loopback, resize them to 256
(keep_ratio: the smallest side becomes 256) and write webdataset shards of 1,000 samples,
with 2 processes and 64 threads each; both are run as commands and measured in the same
run, wall clock and peak resident memory of the process tree. The outputs must agree:
the same keys with the same statuses. Then both run on 10,000 URLs (the images repeated
under distinct query strings), interleaved as on the 2,000: the ratio once start-up weighs
little; and ours on 1,000 too, to show its memory is flat in N.
img2dataset runs from its own virtual environment (`.venv-bench`, created on first use:
its pins clash with the project's); nginx is Debian's, started here on a free port with
a config of our own. `OPENWIT_BENCH_IMAGES` changes the number of images (default 2,000).
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from bench.common import BENCH_DIR, REPO, BenchResult

IMAGES = int(os.environ.get("OPENWIT_BENCH_IMAGES", "2000"))
MEMORY_URLS = (1000, 10_000)
PAGE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
FLAGS = [
    "--input_format", "parquet", "--url_col", "url", "--caption_col", "caption",
    "--output_format", "webdataset", "--processes_count", "2", "--thread_count", "64",
    "--image_size", "256", "--resize_mode", "keep_ratio", "--number_sample_per_shard", "1000",
]  # fmt: skip
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


def tree_usage(root: int, cpu: dict[int, float], largest: list[int]) -> int:
    """Resident bytes of `root` and its descendants, from /proc; records each one's CPU
    seconds so far (user + system) in `cpu`, by pid, and the largest process's bytes."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    ticks: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()  # from field 3
            statm = (entry / "statm").read_text().split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(stat[1])
        rss[pid] = int(statm[1]) * PAGE
        ticks[pid] = (int(stat[11]) + int(stat[12])) / CLOCK_TICKS
    tree, frontier = {root}, {root}
    while frontier:
        frontier = {p for p, parent in parents.items() if parent in frontier} - tree
        tree |= frontier
    cpu.update({pid: ticks[pid] for pid in tree if pid in ticks})
    largest[0] = max(largest[0], *(rss.get(p, 0) for p in tree))
    return sum(rss.get(p, 0) for p in tree)


@dataclass(frozen=True)
class Measure:
    seconds: float  # wall
    cpu_seconds: float  # user + system of the process tree, sampled every 50 ms
    peak_bytes: int  # resident, of the process tree, sampled every 50 ms
    peak_process_bytes: int  # resident, of its largest process


def measured(command: list[str]) -> Measure:
    """Run a command to its end and measure it."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=errors)
        peak = 0
        cpu: dict[int, float] = {}
        largest = [0]
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, tree_usage(process.pid, cpu, largest))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        # Each process counts its own time, as last sampled (the wait's rusage would count
        # the children the command reaped a second time).
        _, status, _ = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        done.set()
        sampler.join()
        errors.seek(0)
        tail = errors.read().decode(errors="replace").strip().splitlines()[-3:]
    if process.returncode:
        raise RuntimeError(f"{command[0]} exited {process.returncode}: {' / '.join(tail)}")
    return Measure(time.perf_counter() - started, sum(cpu.values()), peak, largest[0])


def pillow_build() -> str:
    """Which Pillow the project runs on: `make venv` builds Pillow-SIMD where it can."""
    for name, shown in (("pillow-simd", "Pillow-SIMD"), ("pillow", "Pillow")):
        try:
            return f"{shown} {importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return "Pillow (no distribution found)"


def img2dataset_command(exe: Path, url_list: Path, out: Path) -> list[str]:
    return [str(exe), "--url_list", str(url_list), "--output_folder", str(out), *FLAGS,
            "--enable_wandb", "False"]  # fmt: skip


def our_command(url_list: Path, out: Path, port: int) -> list[str]:
    return [sys.executable, "-m", "pipeline", "download", "--url_list", str(url_list),
            "--output_folder", str(out), *FLAGS, "--set", f"net.allow_private=['127.0.0.1:{port}']",
            "-q"]  # fmt: skip


def key_statuses(folder: Path) -> dict[str, str]:
    """key -> status over every shard parquet of an output folder."""
    found: dict[str, str] = {}
    for path in sorted(folder.glob("*.parquet")):
        table = pq.read_table(path, columns=["key", "status"])
        keys, statuses = table.column("key").to_pylist(), table.column("status").to_pylist()
        found.update(zip(keys, statuses, strict=True))
    return found


def same_outcomes(peer: dict[str, str], ours: dict[str, str]) -> None:
    """Both outputs hold the same keys with the same statuses, or the bench fails."""
    if ours != peer:
        differ = sorted(k for k in peer.keys() | ours.keys() if peer.get(k) != ours.get(k))
        raise AssertionError(f"{len(differ)} keys differ in status, first {differ[:3]}")


def write_url_list(path: Path, urls: list[str]) -> Path:
    captions = [f"image {i}" for i in range(len(urls))]
    pq.write_table(pa.table({"url": urls, "caption": captions}), path)
    return path


def repeated_list(names: list[str], base: str, root: Path, n: int) -> Path:
    """`n` URLs: the images repeated under distinct query strings."""
    urls = [f"{base}/{names[i % len(names)]}?n={i}" for i in range(n)]
    return write_url_list(root / f"urls-{n}.parquet", urls)


def memory_in_n(
    names: list[str], base: str, root: Path, port: int, exe: Path
) -> tuple[list[tuple[int, Measure]], Measure]:
    """Ours on each size of MEMORY_URLS, and img2dataset's best run on the largest: ours
    on the smaller sizes alone, on the largest side by side with img2dataset."""
    *smaller, largest = MEMORY_URLS
    found = []
    for n in smaller:
        url_list = repeated_list(names, base, root, n)
        found.append((n, measured(our_command(url_list, root / f"ours-n{n}", port))))
    url_list = repeated_list(names, base, root, largest)
    peer, ours, _ = side_by_side(exe, url_list, root / "large", port)
    return [*found, (largest, ours)], peer


def large_ratio(peer: Measure | None, memory: list[tuple[int, Measure]]) -> str:
    """The wall times on the largest list, img2dataset's and ours, and their ratio."""
    if peer is None or not memory:
        return ""
    n, ours = memory[-1]
    return (
        f"; {n:,} URLs: img2dataset {peer.seconds:.1f} s, ours {ours.seconds:.1f} s"
        f" ({peer.seconds / ours.seconds:.2f}x)"
    )


def side_by_side(
    exe: Path, url_list: Path, root: Path, port: int
) -> tuple[Measure, Measure, dict[str, str]]:
    """img2dataset, ours, ours, img2dataset: each tool's faster run, so that a burst of
    load from other users of the machine hits both alike, and our keys and statuses, which
    must be img2dataset's (compared on the first run of each)."""
    runs: dict[str, list[Measure]] = {"peer": [], "ours": []}
    root.mkdir(parents=True, exist_ok=True)
    for index, tool in enumerate(("peer", "ours", "ours", "peer")):
        out = root / f"{tool}-{index}"
        command = (
            img2dataset_command(exe, url_list, out)
            if tool == "peer"
            else our_command(url_list, out, port)
        )
        runs[tool].append(measured(command))
    ours = key_statuses(root / "ours-1")
    same_outcomes(key_statuses(root / "peer-0"), ours)
    best = {tool: min(found, key=lambda m: m.seconds) for tool, found in runs.items()}
    return best["peer"], best["ours"], ours


def run() -> BenchResult:
    www = BENCH_DIR / "www"
    names = make_images(www)
    exe = ensure_img2dataset()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        process, port = start_nginx(www, root)
        try:
            base = f"http://127.0.0.1:{port}"
            url_list = write_url_list(root / "urls.parquet", [f"{base}/{n}" for n in names])
            peer_run, ours_run, ours = side_by_side(exe, url_list, root, port)
            memory: list[tuple[int, Measure]] = []
            peer_large = None
            if os.environ.get("OPENWIT_BENCH_MEMORY", "1") == "1":
                memory, peer_large = memory_in_n(names, base, root, port, exe)
        finally:
            process.terminate()
            process.wait()
    written = sum(1 for status in ours.values() if status == "success")
    if written != IMAGES:
        raise AssertionError(f"ours wrote {written} of {IMAGES} images")
    mib = 2**20
    flat = ", ".join(
        f"{n:,} URLs {m.peak_bytes / mib:,.0f} MiB"
        f" (largest process {m.peak_process_bytes / mib:,.0f} MiB)"
        for n, m in memory
    )
    return BenchResult(
        name="download (img2dataset flags)",
        unit="images",
        items=IMAGES,
        peer="img2dataset",
        peer_seconds=peer_run.seconds,
        ours_seconds=ours_run.seconds,
        note=(
            f"nginx on loopback, 640x480 -> 256 keep_ratio, 2 processes x 64 threads, webdataset;"
            f" ours on {pillow_build()};"
            f" same {len(ours):,} keys and statuses{' (and on the larger list)' if memory else ''};"
            f" CPU seconds img2dataset"
            f" {peer_run.cpu_seconds:.1f}, ours {ours_run.cpu_seconds:.1f}; peak RSS img2dataset"
            f" {peer_run.peak_bytes / mib:,.0f} MiB, ours {ours_run.peak_bytes / mib:,.0f} MiB;"
            f" ours in N: {flat or 'not measured (OPENWIT_BENCH_MEMORY=0)'}"
            f"{large_ratio(peer_large, memory)}"
        ),
    )
