"""Every YAML under configs/ parses and instantiates (large models on the meta device), and the steps chain:
each step's default inputs are the previous step's default outputs."""

from __future__ import annotations

import sys
from pathlib import Path
from unittest import mock

import pytest
import torch
import yaml

from lvmm.cli.train import CHECKPOINT_SUBDIR
from lvmm.configs import merged_config
from tests.helpers import ROOT

TRAIN_CONFIGS = sorted(p for p in (ROOT / "configs").glob("stage*/*.yaml"))
BENCHMARKS = ("mug", "mhad", "natops")
# run the full-size configs' trainers on one CPU process: only the model, data and callbacks are under test
CPU_TRAINER = [
    "--trainer.accelerator",
    "cpu",
    "--trainer.devices",
    "1",
    "--trainer.num_nodes",
    "1",
    "--trainer.strategy",
    "auto",
    "--trainer.precision",
    "32-true",
]


def _cli(path: Path, *extra: str):
    import pytorch_lightning as pl

    from lvmm.cli.train import LVMMCLI
    from lvmm.configs import expand_config_args

    args = expand_config_args(["--config", str(path), *CPU_TRAINER, *extra])
    with mock.patch.object(sys, "argv", ["train.py"]), torch.device("meta"):
        return LVMMCLI(
            pl.LightningModule,
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            run=False,
            args=args,
        )


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_instantiates(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # loggers may create folders under their save_dir
    cli = _cli(path)
    cfg = merged_config(path)
    assert type(cli.model).__name__ in ("StageOne", "StageTwo")
    assert next(cli.model.parameters()).device.type == "meta"  # built without allocating the large models
    root = Path(cfg["trainer"]["default_root_dir"])
    assert Path(cli.trainer.checkpoint_callback.dirpath) == root / CHECKPOINT_SUBDIR  # the documented location
    if "DATASET" not in str(root):  # bases are templates
        assert cli.trainer.logger is None or Path(cli.trainer.logger.save_dir) == root


def _ckpt(stage_config: str) -> str:
    root = merged_config(ROOT / "configs" / stage_config)["trainer"]["default_root_dir"]
    return f"{root}/{CHECKPOINT_SUBDIR}/last.ckpt"


@pytest.mark.parametrize("dataset", BENCHMARKS)
def test_benchmark_steps_chain(dataset):
    from lvmm.datasets.latent_encoding import output_name
    from lvmm.evaluation.protocols import get_protocol

    s1 = merged_config(ROOT / f"configs/stage1/{dataset}.yaml")
    s2 = merged_config(ROOT / f"configs/stage2/{dataset}_128.yaml")
    bench = yaml.safe_load((ROOT / f"configs/benchmark/{dataset}.yaml").read_text())
    enc, gen, ev = bench["encode"], bench["generate"], bench["evaluate"]
    # stage one -> encode_motion
    assert enc["ckpt"] == _ckpt(f"stage1/{dataset}.yaml")
    assert enc["shards"] == s1["data"]["init_args"]["train_shards"] == f"data/{dataset}/{dataset}-train-*.tar"
    # encode_motion -> stage two: its output shards match stage two's pattern, stage one is the same run
    example = Path(enc["out"]) / output_name(f"data/{dataset}/{dataset}-train-000000.tar")
    assert Path(s2["data"]["init_args"]["train_shards"]).parent == Path(enc["out"])
    assert example.match(s2["data"]["init_args"]["train_shards"])
    assert s2["model"]["init_args"]["motion_checkpoint"] == enc["ckpt"]
    # clip length: N frames encoded = K + 1 = the protocol's video length
    protocol = get_protocol(gen["protocol"])
    k = s2["model"]["init_args"]["num_frames"]
    assert enc["num_frames"] == k + 1 == protocol.num_frames == 40 and enc["sampling"] == "random_sorted"
    assert s2["data"]["init_args"]["num_frames"] == k <= s2["model"]["init_args"]["unet"]["init_args"]["max_frames"]
    # latent size: frame / (field downsample x VAE reduction) must survive the U-Net's halvings
    flow, vae = s1["model"]["init_args"]["flow"]["init_args"], s1["model"]["init_args"]["vae"]["init_args"]
    latent = s1["data"]["init_args"]["size"][0] // (flow["field_downsample"] * vae["reduction"])
    halvings = sum(s2["model"]["init_args"]["unet"]["init_args"]["downsample"])
    assert latent == 8 and latent % 2**halvings == 0 and protocol.height == s1["data"]["init_args"]["size"][0]
    # stage two -> generate -> evaluate
    assert gen["ckpt"] == _ckpt(f"stage2/{dataset}_128.yaml")
    assert (
        ev["generated"] == gen["out"] and ev["reference"] == gen["reference"] == f"data/{dataset}/{dataset}-test-*.tar"
    )
    assert ev["protocol"] == gen["protocol"] == dataset and ev["seeds"] == gen["seeds"]


@pytest.mark.parametrize("dataset", ["general", "facial"])
def test_512_steps_chain(dataset):
    s1 = merged_config(ROOT / f"configs/stage1/{dataset}512.yaml")
    s2 = merged_config(ROOT / f"configs/stage2/{dataset}_512.yaml")
    assert s2["model"]["init_args"]["motion_checkpoint"] == _ckpt(f"stage1/{dataset}512.yaml")
    assert s2["data"]["init_args"]["train_shards"] == f"outputs/{dataset}/latents/train/latent-*.tar"
    assert s1["data"]["init_args"]["train_shards"] == f"data/{dataset}/{dataset}-train-*.tar"
    flow, vae = s1["model"]["init_args"]["flow"]["init_args"], s1["model"]["init_args"]["vae"]["init_args"]
    latent = s1["data"]["init_args"]["size"][0] // (flow["field_downsample"] * vae["reduction"])
    assert latent % 2 ** sum(s2["model"]["init_args"]["unet"]["init_args"]["downsample"]) == 0


def test_overlays_differ_from_each_other_only_where_datasets_do():
    texts = {ds: merged_config(ROOT / f"configs/stage1/{ds}.yaml") for ds in BENCHMARKS}
    assert texts["mug"]["model"] == texts["mhad"]["model"] == texts["natops"]["model"]
    for ds in BENCHMARKS:
        own = yaml.safe_load((ROOT / f"configs/stage2/{ds}_128.yaml").read_text())
        assert set(own) <= {"__base__", "trainer", "model", "data"} and len(yaml.safe_dump(own).splitlines()) < 20
