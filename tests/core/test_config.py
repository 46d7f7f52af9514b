from __future__ import annotations

from pathlib import Path

import pytest

from core.config import ConfigError, PipelineConfig, load_config, save_config


def test_defaults_validate() -> None:
    assert load_config() == PipelineConfig()


def test_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('workdir = "x"\n[crawl]\nmax_pages = 5\n[curate]\nlanguages = ["en", "de"]\n')
    config = load_config(path, ["crawl.max_pages=7", "train.lr=1", "shards.resize_mode=border"])
    assert config.workdir == "x"
    assert config.crawl.max_pages == 7
    assert config.curate.languages == ("en", "de")
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)
    assert config.shards.resize_mode == "border"  # a bare word is a string


def test_saved_config_round_trips(tmp_path: Path) -> None:
    config = load_config(None, ["seed=3", "curate.dedup_keys=['uid']", "crawl.seeds=s.txt"])
    save_config(config, tmp_path / "config.toml")
    assert load_config(tmp_path / "config.toml") == config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("crawl.nope=1", "unknown config key: crawl.nope"),
        ("nosuch.key=1", "unknown config key: nosuch"),
        ("crawl.max_pages=-1", "crawl.max_pages: must be positive"),
        ("crawl.max_pages=ten", "crawl.max_pages: expected an integer"),
        ("crawl.respect_robots=1", "crawl.respect_robots: expected true or false"),
        ("shards.resize_mode=stretch", "shards.resize_mode: must be"),
        ("curate.min_language_score=2.0", "curate.min_language_score"),
        ("shards.per_host_connections=0", "shards.per_host_connections: must be positive"),
        ("shards.threads=-1", "shards.threads: must not be negative"),
        ("executor.kind=spark", "executor.kind: must be one of local, ray"),
        ("executor.workers=0", "executor.workers: must be positive"),
        ("part_rows=0", "part_rows: must be positive"),
        ("curate.language_engine=cld9", "curate.language_engine: must be one of"),
        ("crawl.max_redirects=-1", "crawl.max_redirects: must not be negative"),
        ("crawl", "--set expects key=value"),
        ("crawl.max_pages.deep=1", "crawl.max_pages"),
    ],
)
def test_bad_values_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(None, [override])


def test_unreadable_config_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[crawl\nmax_pages = 1\n")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(broken)
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(binary)
