"""LVMM: a Large Visual Motion Model that brings still images to life.

`stages/` and `datasets/` install as `lvmm.stages` and `lvmm.datasets`: a top-level package named
`datasets` would shadow Hugging Face's `datasets` in users' environments.
"""

from setuptools import find_packages, setup

packages = ["lvmm"] + [f"lvmm.{p}" for p in find_packages("lvmm")]
packages += ["lvmm.stages"] + [f"lvmm.stages.{p}" for p in find_packages("stages")]
packages += ["lvmm.datasets"] + [f"lvmm.datasets.{p}" for p in find_packages("datasets")]

setup(
    name="lvmm",
    version="0.1.0",
    description="Large Visual Motion Model: latent motion-field diffusion for image animation",
    python_requires=">=3.10",
    packages=packages,
    package_dir={"lvmm": "lvmm", "lvmm.stages": "stages", "lvmm.datasets": "datasets"},
    include_package_data=True,
    install_requires=[
        # >= 2.10: torch.load(weights_only=True) could still run code before 2.6 (CVE-2025-32434)
        # and before 2.10 (CVE-2026-24747); checkpoints are untrusted input here
        "torch>=2.10,<2.15",
        "torchvision>=0.25,<0.30",
        "pytorch-lightning>=2.6,<2.7",
        "jsonargparse[signatures]>=4.32,<5",
        "kornia>=0.7,<0.10",
        "webdataset>=0.2.100,<1.1",
        "wandb>=0.17,<0.32",
        "einops>=0.7,<0.9",
        "av>=12,<19",
        "diffusers>=0.30,<0.43",
        "safetensors>=0.4,<0.9",
        "scikit-image>=0.22,<0.27",
        "scipy>=1.11,<1.18",
        "numpy>=1.26,<2.5",
        "pillow>=10,<14",
        "open-clip-torch>=2.24,<3.4",
        "ftfy>=6.1,<7",
        "regex>=2023.0",
        "tqdm>=4.66,<5",
        "matplotlib>=3.8,<3.12",
        "pyyaml>=6,<7",
    ],
    # one console script a tool; `python tools/<tool>.py` runs the same code from a checkout
    entry_points={
        "console_scripts": [
            "lvmm-train = lvmm.cli.train:run",
            "lvmm-make-shards = lvmm.cli.make_shards:run",
            "lvmm-encode-motion = lvmm.cli.encode_motion:run",
            "lvmm-animate = lvmm.cli.animate:run",
            "lvmm-evaluate = lvmm.cli.evaluate:run",
            "lvmm-eval-stage1 = lvmm.cli.eval_stage1:run",
            "lvmm-export = lvmm.cli.export:run",
            "lvmm-generate = lvmm.cli.generate:run",
            "lvmm-embed = lvmm.cli.embed:run",
            "lvmm-report = lvmm.cli.report:run",
            "lvmm-demo = lvmm.cli.demo:run",
            "lvmm-app = lvmm.cli.app:run",
        ]
    },
    extras_require={
        "dev": [
            "pytest>=8,<10",
            "pytest-xdist>=3.5,<4",
            "ruff>=0.17,<0.18",
            "gradio>=6.0,<7",
            "selenium>=4.20,<5",
        ],  # the web page and its browser test
        "app": ["gradio>=6.0,<7"],  # tools/app.py
    },
)
