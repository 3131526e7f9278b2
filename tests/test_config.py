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


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r["scale"].update(dask_address="scheduler:8786"), r"scale\.dask_address: 'scheduler:8786' is not a Dask"),
    (lambda r: r["scale"].update(workers=0), r"scale\.workers"),
    (lambda r: r["scale"].update(threads_per_worker=0), r"scale\.threads_per_worker"),
])
def test_bad_scale_settings_name_the_key(tmp_path, mutate, message):
    with pytest.raises(ConfigError, match=message):
        load_params(_write(tmp_path, mutate))


def test_the_relearning_attack_takes_one_rate_or_several(tmp_path):
    assert load_params().audit.relearn_lrs == [0.0001, 0.0003, 0.001]  # the default sweeps: see params.yaml
    assert load_params(_write(tmp_path, lambda r: r["audit"].update(relearn_lr=0.0003))).audit.relearn_lrs == [0.0003]
    several = load_params(_write(tmp_path, lambda r: r["audit"].update(relearn_lr=[0.0003, 0.001, 0.0003])))
    assert several.audit.relearn_lrs == [0.0003, 0.001]
    for bad, message in (([], "empty list"), ([0.001, -1.0], r"audit\.relearn_lr"), ("fast", r"audit\.relearn_lr")):
        with pytest.raises(ConfigError, match=message):
            load_params(_write(tmp_path, lambda r, bad=bad: r["audit"].update(relearn_lr=bad)))


def test_a_params_file_without_scale_gets_a_local_cluster(tmp_path):
    params = load_params(_write(tmp_path, lambda r: r.pop("scale")))
    assert (params.scale.dask_address, params.scale.workers) == ("", 2)


def test_a_relearning_check_without_an_adaptive_budget_is_refused(tmp_path):
    path = _write(tmp_path, lambda r: r["unlearn"].update(stop_relearn_gap=0.1, eval_every=0))
    with pytest.raises(ConfigError, match="stop_relearn_gap is a check of the adaptive budget"):
        load_params(path)
    with pytest.raises(ConfigError, match=r"unlearn\.stop_relearn_gap"):
        load_params(_write(tmp_path, lambda r: r["unlearn"].update(stop_relearn_gap=-0.1)))


def test_a_reelicitation_check_without_an_adaptive_budget_is_refused(tmp_path):
    path = _write(tmp_path, lambda r: r["unlearn"].update(stop_reelicit=True, eval_every=0))
    with pytest.raises(ConfigError, match="stop_reelicit is a check of the adaptive budget"):
        load_params(path)


def test_lora_layers_are_null_or_block_indices(tmp_path):
    assert load_params().unlearn.lora.layers is None  # every block
    chosen = load_params(_write(tmp_path, lambda r: r["unlearn"]["lora"].update(layers=[3, 2, 3])))
    assert chosen.unlearn.lora.layers == [2, 3]
    for bad in ([], [-1], "late"):
        with pytest.raises(ConfigError, match=r"unlearn\.lora\.layers"):
            load_params(_write(tmp_path, lambda r, bad=bad: r["unlearn"]["lora"].update(layers=bad)))
