from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from core.config import SandboxConfig
from sandbox.__main__ import main
from sandbox.concepts import all_concepts
from sandbox.heldout import write_heldout
from sandbox.site import SandboxSite

SMALL = SandboxConfig(heldout_per_class=2, image_size=64)


def test_manifest_lists_every_class_and_sample(tmp_path: Path) -> None:
    manifest = Path(write_heldout(SMALL, tmp_path / "heldout"))
    data = json.loads(manifest.read_text())
    assert data["classes"] == [c.name for c in all_concepts()]
    assert all("{}" in t for t in data["templates"]) and len(data["templates"]) >= 3
    assert len(data["samples"]) == 2 * 48
    assert [s["label"] for s in data["samples"][:4]] == [0, 0, 1, 1]
    for sample in data["samples"]:
        image = Image.open(manifest.parent / sample["file"])
        assert (image.format, image.size) == ("JPEG", (64, 64))
    assert sorted(p.name for p in (manifest.parent / "images").iterdir()) == [
        Path(s["file"]).name for s in data["samples"]
    ]


def test_heldout_is_not_served_and_depends_on_seed(tmp_path: Path) -> None:
    first = Path(write_heldout(SMALL, tmp_path / "a")).parent / "images" / "00000.jpg"
    again = Path(write_heldout(SMALL, tmp_path / "b")).parent / "images" / "00000.jpg"
    other = Path(
        write_heldout(SandboxConfig(seed=5, heldout_per_class=2, image_size=64), tmp_path / "c")
    )
    assert first.read_bytes() == again.read_bytes()
    assert first.read_bytes() != (other.parent / "images" / "00000.jpg").read_bytes()
    keys = {r.image.key for r in SandboxSite(SandboxConfig()).routes.values() if r.image}
    assert not any(key.startswith("heldout/") for key in keys)


def test_complete_set_is_skipped_and_a_changed_config_rewrites(tmp_path: Path) -> None:
    manifest = Path(write_heldout(SMALL, tmp_path))
    stamp = manifest.stat().st_mtime_ns
    assert Path(write_heldout(SMALL, tmp_path)).stat().st_mtime_ns == stamp
    bigger = SandboxConfig(heldout_per_class=3, image_size=64)
    assert len(json.loads(Path(write_heldout(bigger, tmp_path)).read_text())["samples"]) == 3 * 48
    write_heldout(SMALL, tmp_path)
    assert len(list((tmp_path / "images").iterdir())) == 2 * 48  # stale images removed
    assert not list(tmp_path.glob(".tmp-*"))


def test_cli_writes_heldout(tmp_path: Path, capsys: object) -> None:
    args = ["heldout", str(tmp_path), "--set", "sandbox.heldout_per_class=1"]
    assert main([*args, "--set", "sandbox.image_size=48"]) == 0
    assert len(json.loads((tmp_path / "manifest.json").read_text())["samples"]) == 48
    assert main(["heldout", str(tmp_path), "--set", "sandbox.nope=1"]) == 2
