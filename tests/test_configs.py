"""Every entry config composes with every option of each of its groups (a typo fails here, with Hydra's message)."""
from __future__ import annotations


import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from tests.helpers import REPO_ROOT

CONFIGS = REPO_ROOT / "configs"
ENTRY = sorted(p.stem for p in CONFIGS.glob("*.yaml"))


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


def groups_of(entry: str) -> list[str]:
    defaults = OmegaConf.to_container(OmegaConf.load(CONFIGS / f"{entry}.yaml")).get("defaults", [])
    names = [next(iter(d)).removeprefix("override ") for d in defaults if isinstance(d, dict)]
    return [n for n in names if (CONFIGS / n).is_dir()]


def bound_pairs() -> dict[str, list[str]]:
    """search option -> the reward options configs/search_judge/ binds to it (the only valid pairs)."""
    root = CONFIGS / "search_judge"
    return {d.name: sorted(p.stem for p in d.glob("*.yaml")) for d in sorted(root.iterdir()) if d.is_dir()}


def overrides_for(entry: str, group: str, option: str) -> list[str]:
    """Overrides that select ``group=option``; search and reward options come with a partner they are bound to."""
    if "search_judge" in str(OmegaConf.load(CONFIGS / f"{entry}.yaml").get("defaults", [])):
        pairs = bound_pairs()
        if group == "search":
            return [f"search={option}", f"reward={pairs[option][0]}"]
        if group == "reward":
            search = next((s for s, rewards in pairs.items() if option in rewards), None)
            return [f"reward={option}"] + ([f"search={search}"] if search else [])
    return [f"{group}={option}"]


CASES = [(entry, None, None) for entry in ENTRY] + [
    (entry, group, option) for entry in ENTRY for group in groups_of(entry) for option in group_options(group)
    if group != "search_judge"
]
EXPERIMENTS = sorted(str(p.relative_to(CONFIGS / "experiment").with_suffix("")) for p in (CONFIGS / "experiment").rglob("*.yaml"))


@pytest.fixture(autouse=True)
def _hydra():
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        yield
    GlobalHydra.instance().clear()


def test_there_are_entry_configs():
    assert {"generate", "train_showo", "eval_geneval"} <= set(ENTRY)


@pytest.mark.parametrize("entry,group,option", CASES)
def test_entry_config_composes(entry, group, option):
    overrides = [] if group is None else overrides_for(entry, group, option)
    cfg = compose(config_name=entry, overrides=overrides)
    assert cfg is not None and len(cfg) > 0


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes(experiment):
    # experiments are `# @package _global_` diffs; they declare which entry config they belong to in their first line
    text = (CONFIGS / "experiment" / f"{experiment}.yaml").read_text()
    entry = next((e for e in ENTRY if f"entry: {e}" in text), None)
    if entry is None:
        pytest.fail(f"configs/experiment/{experiment}.yaml does not say which entry config it is for ('# entry: <name>')")
    cfg = compose(config_name=entry, overrides=[f"+experiment={experiment}"])
    assert cfg is not None


def test_every_bound_search_judge_pair_composes_and_binds_the_judge():
    for search, rewards in bound_pairs().items():
        for reward in rewards:
            cfg = compose(config_name="run_search", overrides=[f"search={search}", f"reward={reward}"])
            strategy = OmegaConf.to_container(cfg.search.strategy, resolve=True)
            if reward != "none":
                assert cfg.reward is not None and cfg.reward in strategy.values(), (search, reward)


def test_unknown_group_option_fails_with_the_valid_list():
    with pytest.raises(Exception, match="showo_256"):
        compose(config_name="generate", overrides=["model=showo_265"])


def test_tiny_model_config_instantiates():
    from hydra.utils import instantiate

    cfg = compose(config_name="generate", overrides=["model=showo_tiny", "prompts=x.txt"])
    bundle = instantiate(cfg.model.bundle)
    out = bundle.pipeline()(["a red circle"], num_inference_steps=2, output_type="tokens")
    assert out.tokens.shape == (1, bundle.layout.num_image_tokens)
