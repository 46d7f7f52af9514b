"""open_clip against the project's trainer, on the sandbox demo's shards.

1. A venv of the bench's own (`runs/bench/openclip-venv`): the CPU wheel of torch==2.13.0
   first, then `open_clip_torch` and its dependencies without letting pip replace torch.
   PyPI's torchvision is built for a newer torch and its import fails registering
   `torchvision::nms`; a `.pth` shim defines the `nms` and `qnms` op schemas with
   `torch.library` first, which is all open_clip needs of torchvision (its transforms).
   open_clip's trainer reads shards with webdataset 0.2's internals (it breaks on the end
   of shard markers of 1.0), so the venv pins webdataset 0.2.86, as open_clip's own
   training requirements do.
2. The demo run (`runs/bench/openclip/run`, or `$OPENWIT_BENCH_DEMO`), made with
   `python -m pipeline demo` when it has no trained model yet, is exported with
   `python -m train export`.
3. Equivalence: in the venv, `bench/openclip_peer.py` loads the export with
   `open_clip.CLIP(**model_cfg)` and `strict=True`; its features on the export's check
   batch must match the project's (max abs difference < 1e-4), and its zero-shot top-1 on
   the held-out set (open_clip's preprocessing, the exported tokenizer) must equal the
   project's.
4. Throughput: open_clip's trainer (`open_clip_train.main`) and the project's, one after
   the other in this run, on the same architecture (the export's `model_cfg`; open_clip
   keeps its own 49,408-id tokenizer), shards, batch size, loader workers and fp32, one
   torch thread each, for `STEPS` steps each; samples/s is that of the best logged window
   of `LOG_EVERY` steps after the first (best-of, as on a shared machine the others' load
   only ever slows a window down).
5. Loader ratio: the project's loader alone (same config and workers; best of three
   windows) against the samples a training step consumes.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench.common import BENCH_DIR, REPO, BenchResult
from core.config import load_config
from train.data import StreamSlot, make_loader, resolve_shards
from train.export import export_run
from train.tokenizer import BpeTokenizer
from train.trainer import train

log = logging.getLogger(__name__)

VENV = BENCH_DIR / "openclip-venv"
WORK = BENCH_DIR / "openclip"
TORCH = "torch==2.13.0"
PEER_DEPS = ("ftfy", "regex", "tqdm", "huggingface_hub", "safetensors", "tokenizers", "numpy",
             "pillow", "pyyaml", "webdataset==0.2.86", "braceexpand", "pandas")  # fmt: skip
STEPS = 60
LOG_EVERY = 5
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
LOADER_BATCHES = 15  # per window
MAX_FEATURE_DIFF = 1e-4
SHIM = """import torch

_lib = torch.library.Library("torchvision", "DEF")
_lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
_lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
"""


def venv_python() -> Path:
    return VENV / "bin" / "python"


def venv_site() -> Path:
    """The venv's site-packages."""
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    out = subprocess.run(
        [str(venv_python()), "-c", code], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def pip(*args: str) -> None:
    subprocess.run([str(venv_python()), "-m", "pip", "install", "-q", *args], check=True)


def ensure_venv() -> None:
    """The peer's venv, built once; `.ready` marks it complete."""
    if (VENV / ".ready").exists():
        return
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
    pip(TORCH)  # the CPU build, first: nothing after it may replace it
    pip("--no-deps", "open_clip_torch", "torchvision", "timm")
    pip(*PEER_DEPS, f"{TORCH}")  # torch named again: pip keeps the installed build
    site = venv_site()
    Path(site, "_torchvision_ops_shim.py").write_text(SHIM)
    Path(site, "_torchvision_ops_shim.pth").write_text("import _torchvision_ops_shim\n")
    subprocess.run([str(venv_python()), "-c", "import open_clip, open_clip_train"], check=True)
    (VENV / ".ready").touch()


def ensure_run() -> Path:
    """The sandbox demo, trained: `$OPENWIT_BENCH_DEMO` (a finished `make demo` run, say),
    else `runs/bench/openclip/run`, made here."""
    run = Path(os.environ.get("OPENWIT_BENCH_DEMO", WORK / "run")).resolve()
    if not (run / "train" / "train.done").exists():
        command = [sys.executable, "-m", "pipeline", "demo", "--config", "configs/demo.toml"]
        subprocess.run([*command, "--workdir", str(run)], check=True, cwd=REPO)
    return run


def peer_check(export: Path, heldout: Path) -> dict[str, Any]:
    script = REPO / "bench" / "openclip_peer.py"
    out = subprocess.run(
        [str(venv_python()), str(script), str(export), str(heldout)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def peer_throughput(model_cfg: dict[str, Any], shards: list[str], batch: int) -> float:
    """open_clip's trainer for STEPS steps; the samples/s of its best logged window."""
    cfg = json.loads(json.dumps(model_cfg))
    cfg["text_cfg"]["vocab_size"] = 49408  # open_clip's own tokenizer
    Path(venv_site(), "open_clip", "model_configs", "openwit-bench.json").write_text(
        json.dumps(cfg)
    )
    logs = WORK / "peer-logs"
    shards = [str(Path(shard).resolve()) for shard in shards]
    pattern = os.path.commonpath(shards) + "/{" + ",".join(Path(s).stem for s in shards) + "}.tar"
    args = [
        "--model", "openwit-bench", "--train-data", pattern, "--dataset-type", "webdataset",
        "--dataset-resampled", "--train-num-samples", str(STEPS * batch), "--epochs", "1",
        "--batch-size", str(batch), "--workers", "0", "--precision", "fp32", "--lr", "1e-3",
        "--wd", "0.1", "--warmup", "20", "--seed", "0", "--log-every-n-steps", str(LOG_EVERY),
        "--save-frequency", "0", "--report-to", "", "--logs", str(logs),
        "--name", f"bench-{int(time.time())}",
    ]  # fmt: skip
    out = subprocess.run(
        [str(venv_python()), "-m", "open_clip_train.main", *args],
        capture_output=True, text=True, cwd=WORK, env=os.environ | ONE_THREAD,
    )  # fmt: skip
    times = [float(t) for t in re.findall(r"Batch \(t\): ([0-9.]+)", out.stdout + out.stderr)]
    if out.returncode or len(times) < 2:
        raise RuntimeError(f"open_clip's trainer failed:\n{(out.stdout + out.stderr)[-3000:]}")
    return batch / min(times[1:])


def our_throughput(run: Path, shards: list[str]) -> tuple[float, float]:
    """The project's trainer for STEPS steps, on one thread: (samples/s of its best logged
    window, mean data wait per step)."""
    config = load_config(run / "config.toml").train
    out = WORK / "ours"
    if out.exists():
        subprocess.run(["rm", "-r", str(out)], check=True)
    config = dataclasses.replace(config, samples=STEPS * config.batch_size, checkpoint_every=STEPS)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train(config, shards, out, log_every=LOG_EVERY)
    finally:
        torch.set_num_threads(threads)
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return max(line["samples_per_second"] for line in lines[1:]), result.data_wait_per_step


def loader_rate(run: Path, shards: list[str]) -> float:
    """Samples/s of the project's loader alone, with the run's config."""
    config = load_config(run / "config.toml").train
    tokenizer = BpeTokenizer.from_json((run / "train" / "tokenizer.json").read_text())
    loader = itertools.chain.from_iterable(
        make_loader(shards, config, tokenizer, StreamSlot(config.seed, epoch, 0, 1))
        for epoch in itertools.count()
    )  # epoch after epoch, as training reads them
    next(loader)  # the first batch fills the shuffle buffer
    rates = []
    for _ in range(3):  # best of three windows, as for training
        started = time.perf_counter()
        for _ in range(LOADER_BATCHES):
            next(loader)
        rates.append(LOADER_BATCHES * config.batch_size / (time.perf_counter() - started))
    return max(rates)


def run() -> BenchResult:
    WORK.mkdir(parents=True, exist_ok=True)
    ensure_venv()
    demo = ensure_run()
    export = Path(export_run(demo, WORK / "export"))
    ours_zero_shot = json.loads((demo / "train" / "results.json").read_text())["zero_shot"]
    peer = peer_check(export, demo / "sandbox" / "heldout")
    diff = max(peer["image_max_abs_diff"], peer["text_max_abs_diff"])
    n = ours_zero_shot["n"]  # the same number of images right (ours is a float32 mean)
    same_top1 = round(peer["zero_shot_top1"] * n) == round(ours_zero_shot["top1"] * n)
    shards = resolve_shards(demo / "shards")
    model_cfg = json.loads((export / "open_clip_config.json").read_text())["model_cfg"]
    batch = load_config(demo / "config.toml").train.batch_size
    peer_rate = peer_throughput(model_cfg, shards, batch)
    ours_rate, wait = our_throughput(demo, shards)
    loader = loader_rate(demo, shards)
    note = (
        f"open_clip {peer['open_clip_version']} loads the export strictly; max feature diff "
        f"{diff:.2e} ({'ok' if diff < MAX_FEATURE_DIFF else 'TOO LARGE'}); zero-shot top-1 "
        f"open_clip {peer['zero_shot_top1']:.4f} vs ours {ours_zero_shot['top1']:.4f} "
        f"({'same' if same_top1 else 'DIFFERENT'}); loader {loader:.0f} samples/s = "
        f"{loader / ours_rate:.1f}x what training consumes; data wait {wait * 1000:.0f} ms/step"
    )
    if diff >= MAX_FEATURE_DIFF or not same_top1:
        log.error("open_clip export check failed: %s", note)
    samples = STEPS * batch
    return BenchResult(
        name="train (open_clip arch)", unit="samples", items=samples, peer="open_clip_train",
        peer_seconds=samples / peer_rate, ours_seconds=samples / ours_rate, note=note,
    )  # fmt: skip
