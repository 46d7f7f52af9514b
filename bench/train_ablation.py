"""`make ablation`: does balancing help? The sandbox's answer beside MetaCLIP's.

Two runs of the whole sandbox chain with the demo's settings, the same seed and the same
step budget (`train.samples`), differing only in curation:

- balanced: the demo's selection (MetaCLIP balancing at the demo's threshold `t`);
- unbalanced: the matched pool before balancing (`curate.balance_threshold` above any
  entry's count, so every matched pair is kept; the same text rules, language filter and
  dedup).

The sandbox's concepts follow a Zipf law, so the head concepts are many times the tail's
and balancing has something to cut. Both models are evaluated zero-shot on the same
held-out set (every concept equally often). MetaCLIP (Xu et al., 2023; ViT-B/32 trained
on 400M pairs, ImageNet zero-shot) reports 65.5% balanced against 61.9% unbalanced.
The figures go to `runs/ablation/ablation.json` and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from typing import Any

from bench.common import REPO

log = logging.getLogger(__name__)

OUT = REPO / "runs" / "ablation"
UNBALANCED_THRESHOLD = 1_000_000_000  # above any entry's count: balancing keeps everything
METACLIP = {"balanced": 0.655, "unbalanced": 0.619}
ARMS = {
    "balanced": [],
    "unbalanced": [f"curate.balance_threshold={UNBALANCED_THRESHOLD}"],
}


def run_arm(name: str, overrides: list[str], extra: list[str]) -> dict[str, Any]:
    """One sandbox chain into `runs/ablation/<name>`; returns its train results."""
    workdir = OUT / name
    command = [sys.executable, "-m", "pipeline", "demo", "--config", "configs/demo.toml"]
    command += ["--workdir", str(workdir)]
    for item in [*overrides, *extra]:
        command += ["--set", item]
    subprocess.run(command, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    results: dict[str, Any] = json.loads((workdir / "train" / "results.json").read_text())
    curate = json.loads((workdir / "curate" / "curate_stats.json").read_text())
    results["pairs"] = curate["kept"]
    return results


def render(arms: dict[str, dict[str, Any]]) -> str:
    lines = [f"{'arm':<12} {'pairs':>7} {'steps':>6} {'top-1':>7} {'top-5':>7} {'MetaCLIP':>9}"]
    for name, result in arms.items():
        zero_shot = result["zero_shot"]
        lines.append(
            f"{name:<12} {result['pairs']:>7,} {result['steps']:>6} {zero_shot['top1']:>7.1%}"
            f" {zero_shot['top5']:>7.1%} {METACLIP[name]:>9.1%}"
        )
    gain = arms["balanced"]["zero_shot"]["top1"] - arms["unbalanced"]["zero_shot"]["top1"]
    direction = "matches" if gain > 0 else "does not match"
    theirs = METACLIP["balanced"] - METACLIP["unbalanced"]
    lines.append(
        f"balancing: {gain * 100:+.1f} points of top-1 here, {theirs * 100:+.1f} in MetaCLIP:"
        f" the direction {direction}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.train_ablation", description=__doc__)
    parser.add_argument("--set", action="append", default=[], help="extra KEY=VALUE for both")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    arms: dict[str, dict[str, Any]] = {}
    for name, overrides in ARMS.items():
        log.info("ablation: %s arm", name)
        arms[name] = run_arm(name, overrides, args.set)
    if arms["balanced"]["steps"] != arms["unbalanced"]["steps"]:
        log.error("the arms took different numbers of steps: not a fair comparison")
        return 1
    table = render(arms)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "ablation.json").write_text(json.dumps({"arms": arms, "metaclip": METACLIP}, indent=2))
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
