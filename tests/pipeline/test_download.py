"""`python -m pipeline download`: img2dataset's flags and output, on a loopback server."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import imagehash
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from core.errors import PipelineError
from pipeline.stages.download import (
    DownloadOptions,
    parse_flags,
    processing_threads,
    read_input,
    run_download,
)
from tests.conftest import REPO, run_cli
from tests.pipeline.test_download_support import (
    BODIES,
    LAYOUT_FLAGS,
    LAYOUT_ROWS,
    ImageHandler,
    describe_layout,
    download,
    parquet_rows,
    server,
    write_csv,
)

__all__ = ["server"]  # the fixture
RECORDED = Path(__file__).with_name("img2dataset_layout.json")
EXTRAS = ["phash", "image_bytes"]


def recorded_layout(tmp_path: Path, host: str) -> dict[str, Any]:
    """img2dataset's own output described, made now if img2dataset is importable here,
    else the checked-in description of the same run."""
    if importlib.util.find_spec("img2dataset") is None:
        description: dict[str, Any] = json.loads(RECORDED.read_text())
        return description
    url_list = write_csv(tmp_path / "peer.csv", host, LAYOUT_ROWS)
    subprocess.run(
        [sys.executable, "-m", "img2dataset", "--url_list", str(url_list), "--output_folder",
         str(tmp_path / "peer"), *LAYOUT_FLAGS, "--enable_wandb", "False"],
        check=True, capture_output=True,
    )  # fmt: skip
    return describe_layout(tmp_path / "peer", f"http://{host}")


def test_output_matches_img2dataset_layout(tmp_path: Path, server: str):
    url_list = write_csv(tmp_path / "urls.csv", server, LAYOUT_ROWS)
    download(server, url_list, tmp_path / "out", *LAYOUT_FLAGS)
    ours = describe_layout(tmp_path / "out", f"http://{server}")
    peer = recorded_layout(tmp_path, server)
    assert set(peer["files"]) <= set(ours["files"])
    assert ours["columns"] == peer["columns"] + [["phash", "string"], ["image_bytes", "int64"]]
    assert ours["rows"] == peer["rows"]  # every input row: same keys, statuses and sizes
    assert ours["members"] == peer["members"]
    assert ours["json_fields"] == peer["json_fields"] + EXTRAS
    assert set(peer["stats_fields"]) <= set(ours["stats_fields"])


def test_rows_keep_their_columns_and_our_extras(tmp_path: Path, server: str):
    url_list = write_csv(tmp_path / "urls.csv", server, LAYOUT_ROWS)
    download(server, url_list, tmp_path / "out", *LAYOUT_FLAGS)
    rows = {row["url"].rsplit("/", 1)[1]: row for row in parquet_rows(tmp_path / "out")}
    good = rows["0.jpg"]
    assert good["extra"] == "x0" and good["caption"] == "cap 0"
    assert good["sha256"] == hashlib.sha256(BODIES["/0.jpg"]).hexdigest()
    assert good["image_bytes"] == len(BODIES["/0.jpg"])
    assert str(imagehash.hex_to_hash(good["phash"])) == good["phash"]
    assert rows["missing.jpg"]["error_message"] and rows["bad.jpg"]["error_message"]
    assert rows["missing.jpg"]["sha256"] is None and rows["bad.jpg"]["width"] is None
    stats = json.loads((tmp_path / "out" / "00001_stats.json").read_text())
    assert (stats["count"], stats["successes"], stats["failed_to_download"]) == (3, 1, 1)
    assert stats["failed_to_resize"] == 1 and stats["status_dict"]["success"] == 1
    with tarfile.open(tmp_path / "out" / "00000.tar") as tar:
        meta = json.loads(tar.extractfile("000000.json").read())  # type: ignore[union-attr]
        assert tar.extractfile("000000.txt").read() == b"cap 0"  # type: ignore[union-attr]
    assert meta == {k: v for k, v in good.items()}


def test_same_output_on_one_or_two_processes(tmp_path: Path, server: str):
    url_list = write_csv(tmp_path / "urls.csv", server, LAYOUT_ROWS)
    flags = [f for f in LAYOUT_FLAGS if f not in ("--processes_count", "2")]
    download(server, url_list, tmp_path / "one", *flags, "--processes_count", "1")
    download(server, url_list, tmp_path / "two", *flags, "--processes_count", "2")
    # the images processed in the event loop's thread, not in threads
    inline = ["--processes_count", "1", "--set", "shards.threads=0"]
    download(server, url_list, tmp_path / "inline", *flags, *inline)
    for name in ("00000.tar", "00001.tar", "00000.parquet", "00001.parquet"):
        expected = (tmp_path / "one" / name).read_bytes()
        assert (tmp_path / "two" / name).read_bytes() == expected
        assert (tmp_path / "inline" / name).read_bytes() == expected


def test_processing_threads_follow_the_cores():
    cores = os.cpu_count() or 1
    assert processing_threads(64, "multiprocessing", cores) == 0  # a core per process
    assert processing_threads(64, "ray", 1) == 0  # Ray gives each task a CPU
    if cores > 1:
        assert processing_threads(64, "multiprocessing", 1) == 8
        assert processing_threads(4, "multiprocessing", 1) == 2
        assert processing_threads(1024, "multiprocessing", 1) == 16


@pytest.mark.parametrize("output_format", ["parquet", "files"])
def test_parquet_and_files_output_formats(tmp_path: Path, server: str, output_format: str):
    url_list = write_csv(tmp_path / "urls.csv", server, LAYOUT_ROWS[:3] + LAYOUT_ROWS[-1:])
    out = tmp_path / "out"
    download(server, url_list, out, "--input_format", "csv", "--caption_col", "caption",
             "--output_format", output_format)  # fmt: skip
    if output_format == "parquet":
        table = pq.read_table(out / "00000.parquet").to_pylist()
        assert [row["status"] for row in table][-1] == "failed_to_download"
        assert table[-1]["jpg"] is None and table[0]["txt"] == "cap 0"
        assert Image.open(io.BytesIO(table[0]["jpg"])).size == (256, 256)
    else:
        names = sorted(p.name for p in (out / "00000").iterdir())
        assert names == [f"00000000{i}.{ext}" for i in range(3) for ext in ("jpg", "json", "txt")]
        assert not list(out.glob("*.tar"))


def test_image_flags_resize_and_encode(tmp_path: Path, server: str):
    url_list = write_csv(tmp_path / "urls.csv", server, LAYOUT_ROWS[:1])
    out = tmp_path / "out"
    download(server, url_list, out, "--input_format", "csv", "--output_format", "webdataset",
             "--image_size", "64", "--resize_mode", "keep_ratio_largest",
             "--encode_format", "png", "--thread_count", "4")  # fmt: skip
    with tarfile.open(out / "00000.tar") as tar:
        assert tar.getnames() == ["000000000.json", "000000000.png"]  # no caption column
        png = Image.open(io.BytesIO(tar.extractfile("000000000.png").read()))  # type: ignore[union-attr]
    assert (png.format, png.size) == ("PNG", (64, 48))
    out2 = tmp_path / "out2"
    download(server, url_list, out2, "--input_format", "csv", "--output_format", "parquet",
             "--image_size", "512", "--resize_mode", "center_crop", "--resize_only_if_bigger",
             "True", "--encode_quality", "50")  # fmt: skip
    row = pq.read_table(out2 / "00000.parquet").to_pylist()[0]
    assert (row["width"], row["height"]) == (320, 240)  # not enlarged


def test_image_rules_are_failed_to_resize(tmp_path: Path, server: str):
    rows = [("/wide.jpg", "w", "-"), ("/small.jpg", "s", "-"), ("/0.jpg", "big", "-")]
    url_list = write_csv(tmp_path / "urls.csv", server, rows)
    download(server, url_list, tmp_path / "out", "--input_format", "csv",
             "--output_format", "parquet", "--min_image_size", "50",
             "--max_aspect_ratio", "3", "--max_image_area", "70000")  # fmt: skip
    found = {r["url"].rsplit("/", 1)[1]: r for r in parquet_rows(tmp_path / "out")}
    assert found["small.jpg"]["error_message"] == "image too small"
    assert found["wide.jpg"]["error_message"] == "aspect ratio too large"
    assert found["0.jpg"]["error_message"] == "image area too large"
    assert {r["status"] for r in found.values()} == {"failed_to_resize"}


def test_compute_and_verify_hash(tmp_path: Path, server: str):
    md5 = [hashlib.md5(BODIES[f"/{i}.jpg"]).hexdigest() for i in range(2)]
    table = pa.table(
        {"link": [f"http://{server}/{i}.jpg" for i in range(2)], "h": [md5[0], "0" * 32]}
    )
    pq.write_table(table, tmp_path / "urls.parquet")
    download(server, tmp_path / "urls.parquet", tmp_path / "out", "--input_format", "parquet",
             "--url_col", "link", "--output_format", "parquet", "--compute_hash", "md5",
             "--verify_hash", '["h","md5"]')  # fmt: skip
    rows = parquet_rows(tmp_path / "out")
    assert [r["status"] for r in rows] == ["success", "failed_to_download"]
    assert rows[1]["error_message"] == "hash mismatch" and rows[0]["md5"] == md5[0]
    assert "sha256" not in rows[0]


def test_retries_timeout_and_opt_out(tmp_path: Path, server: str):
    rows = [("/flaky.jpg", "f", "-"), ("/slow.jpg", "s", "-"), ("/optout.jpg", "o", "-")]
    url_list = write_csv(tmp_path / "urls.csv", server, rows)
    download(server, url_list, tmp_path / "out", "--input_format", "csv", "--output_format",
             "parquet", "--retries", "1", "--timeout", "0.5")  # fmt: skip
    found = {r["url"].rsplit("/", 1)[1]: r for r in parquet_rows(tmp_path / "out")}
    assert found["flaky.jpg"]["status"] == "success" and ImageHandler.hits["/flaky.jpg"] == 2
    assert found["slow.jpg"]["status"] == "failed_to_download"
    assert "timeout" in found["slow.jpg"]["error_message"]
    assert found["optout.jpg"]["status"] == "failed_to_download"
    assert "X-Robots-Tag" in found["optout.jpg"]["error_message"]
    rows = [("/optout.jpg", "o", "-")]
    download(server, write_csv(tmp_path / "o.csv", server, rows), tmp_path / "allowed",
             "--input_format", "csv", "--output_format", "parquet",
             "--disallowed_header_directives", "[]")  # fmt: skip
    assert parquet_rows(tmp_path / "allowed")[0]["status"] == "success"


def test_incremental_modes(tmp_path: Path, server: str):
    url_list = write_csv(tmp_path / "urls.csv", server, LAYOUT_ROWS[:4])
    out = tmp_path / "out"
    flags = ["--input_format", "csv", "--output_format", "webdataset",
             "--number_sample_per_shard", "2"]  # fmt: skip
    download(server, url_list, out, *flags)
    (out / "00001_stats.json").unlink()  # shard 1 is not done
    ImageHandler.hits = {}
    download(server, url_list, out, *flags)  # incremental: shard 1 only
    assert sorted(ImageHandler.hits) == ["/2.jpg", "/3.jpg"]
    download(server, url_list, out, *flags, "--incremental_mode", "extend")
    assert sorted(p.name for p in out.glob("*.tar")) == [f"0000{i}.tar" for i in range(4)]
    assert parquet_rows(out)[-1]["key"] == "000031"  # 10 x shard 3 + row 1: one index digit
    (out / "stray.txt").write_text("x")
    download(server, url_list, out, *flags, "--incremental_mode", "overwrite")
    assert sorted(p.name for p in out.glob("*.tar")) == ["00000.tar", "00001.tar"]
    assert not (out / "stray.txt").exists()


@pytest.mark.parametrize("fmt", ["txt", "tsv.gz", "jsonl", "json", "csv"])
def test_input_formats(tmp_path: Path, fmt: str):
    rows = [{"u": "http://a.test/1.jpg", "t": "one", "n": 1}, {"u": "http://a.test/2.jpg", "t": "two", "n": 2}]  # fmt: skip  # noqa: E501
    path = tmp_path / f"list.{fmt}"
    if fmt == "txt":
        path.write_text("".join(r["u"] + "\n" for r in rows))
    elif fmt == "tsv.gz":
        path.write_bytes(gzip.compress(("u\tt\tn\n" + "".join(f"{r['u']}\t{r['t']}\t{r['n']}\n" for r in rows)).encode()))  # fmt: skip  # noqa: E501
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "json":
        path.write_text(json.dumps(rows))
    else:
        path.write_text("u,t,n\n" + "".join(f"{r['u']},{r['t']},{r['n']}\n" for r in rows))
    caption = None if fmt == "txt" else "t"
    extra = () if fmt == "txt" else ("n",)
    options = DownloadOptions(str(path), input_format=fmt, url_col="u", caption_col=caption,
                              save_additional_columns=extra)  # fmt: skip
    table = read_input(str(path), options)
    assert table.column("url").to_pylist() == [r["u"] for r in rows]
    if fmt != "txt":
        assert table.column_names == ["n", "caption", "url"]
        assert table.column("caption").to_pylist() == ["one", "two"]


def test_bad_flags_are_one_line(tmp_path: Path):
    with pytest.raises(PipelineError, match="--enable_wandb is not supported"):
        parse_flags(["--url_list", "x", "--enable_wandb", "True"])
    parse_flags(["--url_list", "x", "--enable_wandb", "False"])  # the default: fine
    with pytest.raises(PipelineError, match="unknown argument --colour"):
        parse_flags(["--url_list", "x", "--colour", "red"])
    with pytest.raises(PipelineError, match="--output_format"):
        parse_flags(["--url_list", "x", "--output_format", "tfrecord"])
    with pytest.raises(PipelineError, match="cannot use url"):
        parse_flags(["--url_list", "x", "--save_additional_columns", "[url]"])
    result = run_cli("download", "--url_list", str(tmp_path / "none.txt"))
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "no such URL list" in result.stderr
    (tmp_path / "empty.txt").write_text("")
    options, config, _ = parse_flags(["--url_list", str(tmp_path / "empty.txt"),
                                      "--output_folder", str(tmp_path / "out")])  # fmt: skip
    with pytest.raises(PipelineError, match="holds no URL"):
        run_download(options, config, quiet=True)


def test_a_run_that_fetched_nothing_says_why_and_how_to_fix_it(tmp_path: Path, server: str):
    url_list = write_csv(tmp_path / "urls.csv", server, LAYOUT_ROWS[:3])
    out = tmp_path / "out"
    flags = ["--input_format", "csv", "--output_format", "webdataset"]
    result = run_cli("download", "--url_list", str(url_list), "--output_folder", str(out), *flags)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert "3 of 3 rows failed with private_address" in errors[0]
    assert "net.allow_private" in errors[0]
    assert not list(out.glob("*_stats.json"))  # not done: a rerun with the fix redoes it
    download(server, url_list, out, *flags)
    assert [r["status"] for r in parquet_rows(out)] == ["success"] * 3


def test_a_killed_run_leaves_no_partial_output_and_resumes(tmp_path: Path, server: str):
    rows = [(f"/{i}.jpg", f"c{i}", "-") for i in range(4)] + [("/slow.jpg", "s", "-")] * 4
    url_list = write_csv(tmp_path / "urls.csv", server, rows)
    out = tmp_path / "out"
    flags = ["--input_format", "csv", "--output_format", "webdataset",
             "--number_sample_per_shard", "4", "--processes_count", "2"]  # fmt: skip
    allow = ["--set", f"net.allow_private=['{server}']"]
    command = [sys.executable, "-m", "pipeline", "download", "--url_list", str(url_list),
               "--output_folder", str(out), *flags, *allow, "-q"]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True)
    deadline = time.monotonic() + 60
    while ImageHandler.hits.get("/slow.jpg", 0) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)  # shard 1 is waiting on its slow images
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "00001.tar").exists() and not (out / "00001_stats.json").exists()
    download(server, url_list, out, *flags)
    assert [r["status"] for r in parquet_rows(out)] == ["success"] * 8
    assert not [p for p in out.rglob("*") if p.name.startswith(".tmp")]


def test_the_watchdog_ends_a_stalled_shard(tmp_path: Path, server: str):
    rows = [("/0.jpg", "fast", "-"), ("/slow.jpg", "slow", "-")]
    url_list = write_csv(tmp_path / "urls.csv", server, rows)
    flags = ["--input_format", "csv", "--output_format", "parquet", "--timeout", "30"]
    download(server, url_list, tmp_path / "out", *flags, "--set", "shards.stall_seconds=0.5")
    found = {r["url"].rsplit("/", 1)[1]: r for r in parquet_rows(tmp_path / "out")}
    assert found["0.jpg"]["status"] == "success"
    assert found["slow.jpg"]["status"] == "failed_to_download"
    assert found["slow.jpg"]["error_message"].startswith("stalled")
