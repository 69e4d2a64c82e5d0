"""common.validate: every invalid setting is named with its value, all at once."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from common.validate import Choice, ConfigError, File, Float, Int, Str, validate


def test_all_problems_are_reported_with_key_and_value(tmp_path):
    cfg = OmegaConf.create({"batch_size": 0, "steps": "abc", "guidance": -3.0, "mode": "fast", "name": " ",
                            "prompts": str(tmp_path / "none.txt"), "opt": None})
    settings = (Int("batch_size", min=1), Int("steps", min=1), Float("guidance", min=0), Choice("mode", ["a", "b"]),
                Str("name"), File("prompts"), Int("opt", optional=True), Int("missing"))
    with pytest.raises(ConfigError) as err:
        validate(cfg, settings, "generate")
    lines = [line.strip() for line in str(err.value).splitlines()]
    assert lines[0] == "generate: 7 invalid settings"
    assert "batch_size = 0: must be an integer >= 1" in lines
    assert "steps = 'abc': must be an integer >= 1" in lines
    assert "guidance = -3.0: must be a number >= 0" in lines
    assert "mode = 'fast': must be one of ['a', 'b']" in lines
    assert "name = ' ': must not be empty" in lines
    assert any(line.startswith("prompts = ") and line.endswith("file not found") for line in lines)
    assert "missing = <missing>: is missing" in lines


def test_booleans_are_not_integers_and_nan_is_not_a_number():
    cfg = OmegaConf.create({"n": True, "x": float("nan"), "req": "???"})
    with pytest.raises(ConfigError) as err:
        validate(cfg, (Int("n"), Float("x"), Int("req")), "r")
    assert "n = True: must be an integer" in str(err.value) and "x = nan" in str(err.value)
    assert "req = '???': must be set" in str(err.value)


def test_valid_settings_pass(tmp_path):
    (tmp_path / "p.txt").write_text("x")
    validate({"a": 1, "b": 0.5, "p": str(tmp_path / "p.txt")}, (Int("a", min=1), Float("b", max=1), File("p")), "r")
