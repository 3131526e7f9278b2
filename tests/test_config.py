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


def _overlay(tmp_path: Path, text: str, name: str = "overlay.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_an_overlay_changes_only_what_it_names(tmp_path):
    (tmp_path / "base").mkdir()
    _write(tmp_path / "base", lambda r: r["unlearn"]["methods"]["npo_gd"].update(retain_weight=2.0))
    path = _overlay(tmp_path, "extends: base/params.yaml\nunlearn:\n  lr: 0.002\n  methods:\n    npo_gd: {beta: 0.05}\n"
                               "audit: {relearn_lr: [0.001]}\n")
    base, params = load_params(tmp_path / "base" / "params.yaml"), load_params(path)
    assert params.unlearn.lr == 0.002 and params.audit.relearn_lr == [0.001]  # a list replaces, never appends
    npo_gd = params.unlearn.methods["npo_gd"]
    assert npo_gd.beta == 0.05 and npo_gd.retain_weight == 2.0  # a mapping merges key by key
    changed = params.model_dump()
    changed["unlearn"].update(lr=base.unlearn.lr, methods=base.unlearn.model_dump()["methods"])
    changed["audit"]["relearn_lr"] = base.audit.relearn_lr
    assert changed == base.model_dump()


def test_an_overlay_of_an_overlay(tmp_path):
    first = _overlay(tmp_path, f"extends: {DEFAULT_PARAMS}\nunlearn: {{lr: 0.002, max_steps: 50}}\n", "first.yaml")
    second = _overlay(tmp_path, "extends: first.yaml\nunlearn: {max_steps: 60}\n", "second.yaml")
    params = load_params(second)
    assert (params.unlearn.lr, params.unlearn.max_steps) == (0.002, 60)
    assert load_params(first).unlearn.max_steps == 50


def test_an_overlay_key_is_checked_like_any_other(tmp_path):
    path = _overlay(tmp_path, f"extends: {DEFAULT_PARAMS}\nunlearn: {{max_step: 50}}\n")
    with pytest.raises(ConfigError, match=r"overlay\.yaml: unlearn\.max_step: unknown key"):
        load_params(path)


@pytest.mark.parametrize("text, message", [
    ("extends: nowhere.yaml\n", r"params file not found: .*nowhere\.yaml \(extended by .*overlay\.yaml\)"),
    ("extends: overlay.yaml\n", r"'extends' loops"),
    ("extends: [params.yaml]\n", r"extends: must be the path of another params file"),
    ("extends: ''\n", r"extends: must be the path of another params file"),
])
def test_a_bad_extends_is_a_clear_error(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message):
        load_params(_overlay(tmp_path, text))


def test_the_thorough_profile_is_the_measured_setting():
    """profiles/thorough.yaml is the stop-48 bench command's setting; a change to it is a new setting."""
    params = load_params(DEFAULT_PARAMS.parent / "profiles" / "thorough.yaml")
    unlearn, audit = params.unlearn, params.audit
    assert (unlearn.max_steps, unlearn.min_steps, unlearn.eval_every, unlearn.stop_confirmations) == (240, 80, 20, 2)
    assert (unlearn.stop_relearn_gap, unlearn.inner_attack_steps, unlearn.methods["npo_gd"].beta) == (0.1, 10, 0.04)
    assert (unlearn.retain_batch_size, unlearn.general_retain_rows, unlearn.entity_retain_rows) == (24, 200, 600)
    assert (unlearn.retain_replay_share, unlearn.swap_retain_rows, unlearn.swap_retain_weight) == (0.5, 8, 8.0)
    assert unlearn.specific_tokens and unlearn.reset_fraction == 0.001 and unlearn.stop_train_ratio == 1.0
    assert (unlearn.average_last, unlearn.average_every) == (5, 10)
    assert (audit.heldout_share, audit.dev_share) == (0.2, 0.1)
    assert params.gate == load_params().gate  # the profile trains differently; it is judged the same
