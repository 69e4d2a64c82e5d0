"""common.recipe.check names the environment variable behind an unusable setting before anything runs."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from common.recipe import check, unset_variables
from common.validate import ConfigError

BASE = {"run_dir": "runs/x", "if_exists": "resume", "threads": 1}


def test_unset_variable_with_a_placeholder_default_is_named(monkeypatch):
    monkeypatch.delenv("IMAGECOT_TEST_CKPT", raising=False)
    cfg = OmegaConf.create({**BASE, "model": {"pretrained": "${oc.env:IMAGECOT_TEST_CKPT,???}"}})
    assert cfg.model.pretrained == "???"  # what a recipe used to receive as a path
    with pytest.raises(ConfigError, match=r"model.pretrained = .* \(environment variable IMAGECOT_TEST_CKPT is not set\)"):
        check(cfg, "recipe")
    monkeypatch.setenv("IMAGECOT_TEST_CKPT", "/some/dir")
    assert check(cfg, "recipe") == 1


def test_unresolvable_interpolations_are_named_and_plain_missing_values_stay_lazy(monkeypatch):
    monkeypatch.delenv("IMAGECOT_TEST_NONE", raising=False)
    cfg = OmegaConf.create({**BASE, "a": "${oc.env:IMAGECOT_TEST_NONE}", "b": "${oc.env:HOME,x}/y", "c": "???",
                            "d": "${oc.env:IMAGECOT_TEST_NONE,null}"})
    problems = unset_variables(cfg)
    assert len(problems) == 1 and problems[0].startswith("a = ") and "IMAGECOT_TEST_NONE" in problems[0]
    # "c" (a plain ???, e.g. iterative.prompts of scripts/train_dpo.py) fails only where it is read; "d" is a null
    assert OmegaConf.is_missing(cfg, "c") and cfg.d is None
