"""`make ablation`: does balancing help? The sandbox's answer beside MetaCLIP's.

Two runs of the whole sandbox chain with the demo's settings, the same seed and the same
step budget (`train.samples`), differing only in curation:

- balanced: the demo's selection (MetaCLIP balancing at the demo's threshold `t`);
- unbalanced: the matched pool before balancing (`curate.balance_threshold` above any
  entry's count, so every matched pair is kept; the same text rules, language filter and
  dedup).

Then two more on a sandbox web whose captions are in seven languages (half English):

- english: English-only curation of that web (the language filter keeps English);
- worldwide: MetaCLIP 2's worldwide curation of the same web (each language matched
  against its own entry list, balanced with its own t).

The sandbox's concepts follow a Zipf law, so the head concepts are many times the tail's
and balancing has something to cut. Every model is evaluated zero-shot on the same
held-out set (every concept equally often, English prompts). MetaCLIP (Xu et al., 2023;
ViT-B/32 trained on 400M pairs, ImageNet zero-shot) reports 65.5% balanced against 61.9%
unbalanced; MetaCLIP 2 (Chuang et al., 2025; ViT-H/14, ImageNet zero-shot) 81.3%
worldwide against 80.5% English-only. The figures go to `runs/ablation/ablation.json` and
a table on stdout.
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
MULTILINGUAL = "sandbox.languages=['en','fr','de','es','it','nl','pt']"
ARMS = {
    "balanced": [],
    "unbalanced": [f"curate.balance_threshold={UNBALANCED_THRESHOLD}"],
    "english": [MULTILINGUAL, "curate.mode='english'"],
    "worldwide": [MULTILINGUAL, "curate.mode='worldwide'"],
}
# The published figure for each arm, and the pairs of arms compared (better, baseline).
METACLIP = {"balanced": 0.655, "unbalanced": 0.619, "english": 0.805, "worldwide": 0.813}
COMPARISONS = (("balancing", "balanced", "unbalanced"), ("worldwide", "worldwide", "english"))


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
    lines = [f"{'arm':<12} {'pairs':>7} {'steps':>6} {'top-1':>7} {'top-5':>7} {'published':>9}"]
    for name, result in arms.items():
        zero_shot = result["zero_shot"]
        lines.append(
            f"{name:<12} {result['pairs']:>7,} {result['steps']:>6} {zero_shot['top1']:>7.1%}"
            f" {zero_shot['top5']:>7.1%} {METACLIP[name]:>9.1%}"
        )
    for what, better, baseline in COMPARISONS:
        gain = arms[better]["zero_shot"]["top1"] - arms[baseline]["zero_shot"]["top1"]
        theirs = METACLIP[better] - METACLIP[baseline]
        direction = "matches" if gain > 0 else "does not match"
        lines.append(
            f"{what}: {gain * 100:+.1f} points of top-1 here, {theirs * 100:+.1f} published:"
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
    if len({result["steps"] for result in arms.values()}) != 1:
        log.error("the arms took different numbers of steps: not a fair comparison")
        return 1
    table = render(arms)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "ablation.json").write_text(json.dumps({"arms": arms, "metaclip": METACLIP}, indent=2))
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
