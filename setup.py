"""imagecot: verify and reinforce text-to-image generation step by step."""
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent
REQUIREMENTS = [
    line.strip()
    for line in (ROOT / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#") and not line.startswith("pytest")
]

setup(
    name="imagecot",
    version="0.1.0",
    description="Show-o, process/outcome reward models, search and DPO for step-by-step image generation",
    long_description=(ROOT / "README.md").read_text(),
    long_description_content_type="text/markdown",
    # Python 3.11 is what CI runs and requirements.txt pins for (no `python -P` is needed: no script shadows a package).
    python_requires=">=3.11",
    classifiers=["Programming Language :: Python :: 3", "Programming Language :: Python :: 3.11"],
    packages=find_packages(include=["common*", "showo*", "janus*", "reward_models*", "eval*", "search*", "dpo*", "grpo*"]),
    install_requires=REQUIREMENTS,
    extras_require={
        # The official GenEval detector backend (optional; needs a compiled mmcv, see README).
        # GenEval's official detector backend (optional): mmcv-full 1.7.x must be compiled for your GPU, see
        # docs/geneval_detector.md. The default detector is the pure-PyTorch port, which needs none of this.
        "mmdet": ["openmim", "mmdet>=2.28.2,<3"],
        # only for configs/accelerate/deepspeed_zero{2,3}.yaml
        "deepspeed": ["deepspeed"],
        "dev": ["pytest>=8.0"],
    },
)
