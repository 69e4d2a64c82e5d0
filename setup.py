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
    python_requires=">=3.10",
    packages=find_packages(include=["showo*", "reward_models*", "dpo*", "search*", "eval*"]),
    install_requires=REQUIREMENTS,
    extras_require={
        # The official GenEval detector backend (optional; needs a compiled mmcv, see README).
        "mmdet": ["mmdet>=2.25,<3.4", "mmcv-full>=1.7"],
        "dev": ["pytest>=8.0"],
    },
)
