from pathlib import Path

import pytest
import yaml

from lethe.config import DEFAULT_PARAMS, load_params
from lethe.errors import ConfigError


def _write(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(DEFAULT_PARAMS.read_text())
    mutate(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_project_params_load():
    params = load_params()
    assert {"tiny", "default"} <= set(params.world.sizes)


def test_wrong_type_names_the_key(tmp_path):
    path = _write(tmp_path, lambda r: r["world"]["sizes"]["tiny"]["train"].update(epochs="many"))
    with pytest.raises(ConfigError, match=r"world\.sizes\.tiny\.train\.epochs"):
        load_params(path)


def test_no_silent_coercion(tmp_path):
    path = _write(tmp_path, lambda r: r["backend"].update(batch_size="32"))
    with pytest.raises(ConfigError, match=r"backend\.batch_size"):
        load_params(path)


def test_unknown_key_names_the_key(tmp_path):
    path = _write(tmp_path, lambda r: r["backend"].update(temprature=0.5))
    with pytest.raises(ConfigError, match=r"backend\.temprature: unknown key"):
        load_params(path)


def test_corrupt_yaml(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("world: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(path)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "none.yaml")


def test_bad_author_range(tmp_path):
    path = _write(tmp_path, lambda r: r["world"]["sizes"]["tiny"].update(authors="0-500"))
    with pytest.raises(ConfigError, match="outside"):
        load_params(path)
