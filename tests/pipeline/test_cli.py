"""The CLI's answers to bad input: one line on stderr, exit status 2, nothing lost."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_cli


def assert_one_line_error(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("openwit: error:")]
    assert len(errors) == 1, result.stderr
    assert fragment in errors[0]
    assert "Traceback" not in result.stderr


def test_missing_seeds_file(tmp_path: Path) -> None:
    result = run_cli("crawl", "--workdir", str(tmp_path / "run"), "--seeds", "nope.txt")
    assert_one_line_error(result, "seeds file not found: nope.txt")


def test_seeds_file_with_a_bad_url(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("# comment\nhttp://127.0.0.1:9/\nftp://example.org/\n")
    result = run_cli("crawl", "--workdir", str(tmp_path / "run"), "--seeds", str(seeds))
    assert_one_line_error(result, "invalid seed URL 'ftp://example.org/'")


def test_unreadable_config(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[crawl]\nmax_pages = \n")
    result = run_cli("crawl", "--workdir", str(tmp_path / "run"), "--config", str(config))
    assert_one_line_error(result, "cannot read config file")


def test_unknown_set_key(tmp_path: Path) -> None:
    result = run_cli("crawl", "--workdir", str(tmp_path / "run"), "--set", "crawl.max_pagez=3")
    assert_one_line_error(result, "unknown config key: crawl.max_pagez")


def test_report_of_an_empty_run(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    result = run_cli("report", str(tmp_path / "run"))
    assert result.returncode == 0, result.stderr
    assert "crawl   not run" in result.stdout


def test_report_of_a_missing_folder_is_one_line_and_creates_nothing(tmp_path: Path) -> None:
    result = run_cli("report", "--workdir", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("openwit: error: no run folder")
    assert not (tmp_path / "run").exists()


def test_a_stray_argument_is_refused_outside_report(tmp_path: Path) -> None:
    result = run_cli("curate", str(tmp_path / "run"))
    assert result.returncode == 2
    assert "RUN_DIR is for report only" in result.stderr


def test_port_in_use_is_one_line_and_loses_nothing(tmp_path: Path) -> None:
    # A crawl recorded its sandbox ports; one of them is now taken by another program.
    workdir = tmp_path / "run"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        ports_file = workdir / "sandbox" / "ports.json"
        ports_file.parent.mkdir(parents=True)
        ports_file.write_text(json.dumps({"ports": [port, 0, 0, 0]}))
        before = ports_file.read_bytes()
        result = run_cli("crawl", "--workdir", str(workdir), "--set", "crawl.max_pages=5")
    assert_one_line_error(result, f"port {port} on 127.0.0.1 is already in use")
    assert ports_file.read_bytes() == before
    assert not (workdir / "crawl" / "crawl.done").exists()


@pytest.mark.parametrize("command", ["curate", "shards", "train"])
def test_stage_without_its_input(tmp_path: Path, command: str) -> None:
    result = run_cli(command, "--workdir", str(tmp_path / "run"))
    assert_one_line_error(result, "first")


def test_a_run_folder_keeps_its_config(tmp_path: Path) -> None:
    from core.config import load_config, save_config
    from pipeline.cli import build_parser, resolve_config

    workdir = tmp_path / "run"
    save_config(load_config(None, ["seed=5", f"workdir='{workdir}'"]), workdir / "config.toml")
    args = build_parser().parse_args(["shards", "--workdir", str(workdir), "--set", "seed=6"])
    assert resolve_config(args).seed == 6
    args = build_parser().parse_args(["shards", "--workdir", str(workdir)])
    assert resolve_config(args).seed == 5
    args = build_parser().parse_args(["shards", "--workdir", str(tmp_path / "new")])
    assert resolve_config(args).seed == 0
