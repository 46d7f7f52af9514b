"""Fixtures: colour shards and a colour eval set, built once per session in a temp folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.train.colour_data import write_colour_eval, write_colour_shards


@pytest.fixture(scope="session")
def colour_shards(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """4 shards of 32 solid-colour samples each (128 samples, 4 colours)."""
    return write_colour_shards(tmp_path_factory.mktemp("shards"))


@pytest.fixture(scope="session")
def colour_eval(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_colour_eval(tmp_path_factory.mktemp("eval"))
