"""scripts/generate_benchmark.py on a tiny Show-o: the T2I-CompBench and WISE layouts, per-image seeds, resume."""
import importlib.util
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from eval.jobs import compbench_jobs
from eval.t2i_compbench.layout import discover_category
from showo.factory import build_tiny_showo
from tests.helpers import assert_same_image, require_shared

REPO = Path(__file__).resolve().parents[2]
WORDS = "a red ball and blue cube green bench".split()
VQ = dict(ch=16, encoder_ch_mult=[1, 2, 2], encoder_num_res_blocks=[1, 1, 1], decoder_ch_mult=[1, 2, 2],
          decoder_num_res_blocks=[1, 1, 1], z_channels=6, codebook_dim=6, num_groups=8, resolution=16)


def _recipe():
    spec = importlib.util.spec_from_file_location("generate_benchmark_recipe", REPO / "scripts" / "generate_benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen_bench")
    build_tiny_showo(WORDS, vq=VQ, seed=0).save_pretrained(root / "showo")
    return root / "showo"


def _cfg(bundle_dir, run_dir, *extra):
    with initialize_config_dir(str(REPO / "configs"), version_base="1.3"):
        return compose("generate_benchmark", overrides=[
            "model=showo_bundle", f"model.bundle.directory={bundle_dir}", "model.sampling.num_inference_steps=2",
            "device=cpu", "threads=1", f"run_dir={run_dir}", *extra])


def test_compbench_layout_and_per_image_seeds(bundle_dir, tmp_path):
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    (prompts / "color_val.txt").write_text("a red ball\na blue cube and a green bench\n")
    common = ("benchmark=compbench", f"benchmark.prompt_dir={prompts}", "benchmark.categories=[color]",
              "benchmark.images_per_prompt=3")
    run = _recipe().run(_cfg(bundle_dir, tmp_path / "a", *common, "batch_size=4"))
    images = discover_category(run / "images", "color")
    assert [(i.prompt, i.index) for i in images] == [("a red ball", k) for k in range(3)] + [
        ("a blue cube and a green bench", k) for k in range(3, 6)]
    # the batch size does not change an image, and a rerun writes only what is missing
    other = _recipe().run(_cfg(bundle_dir, tmp_path / "b", *common, "batch_size=1"))
    for a, b in zip(images, discover_category(other / "images", "color")):
        assert_same_image(Image.open(a.path), Image.open(b.path), a.path.name)
    before = images[0].path.stat().st_mtime_ns
    images[1].path.unlink()
    _recipe().run(_cfg(bundle_dir, tmp_path / "a", *common, "batch_size=4"))
    assert images[1].path.is_file() and images[0].path.stat().st_mtime_ns == before  # only the missing one rewritten
    assert_same_image(Image.open(images[1].path), Image.open(discover_category(other / "images", "color")[1].path))
    assert len(compbench_jobs(tmp_path, prompts, ["color"])) == 20  # the official 10 per prompt by default


def test_wise_layout(bundle_dir, tmp_path):
    wise = require_shared("wise")
    run = _recipe().run(_cfg(bundle_dir, tmp_path / "w", "benchmark=wise", f"benchmark.prompt_dir={wise}", "limit=2"))
    assert sorted(p.name for p in (run / "images").iterdir()) == ["1.png", "2.png"]
