"""Drill: hostile checkpoints, configs and shard specs are refused with a clear error and no side effect.

Every crafted file names a class path or payload an attacker would try; the test watches a temporary
folder (and the functions a payload would reach) and checks that nothing was written, deleted or called.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from lvmm.checkpoint import CheckpointError, build, check_hyperparameters, load_networks, read_checkpoint, save_networks
from lvmm.datasets.readers import expand_shards
from tests.helpers import ROOT as REPO


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the sha1 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def write_safetensors(path: Path, networks, extra="{}") -> Path:
    save_file(
        {"net.w": torch.zeros(1)}, str(path), metadata={"lvmm_networks": json.dumps(networks), "lvmm_extra": extra}
    )
    return path


def write_ckpt(path: Path, networks) -> Path:
    torch.save({"lvmm_networks": networks, "state_dict": {"net.w": torch.zeros(1)}}, path)
    return path


def hostile_configs(watched: Path) -> dict[str, dict]:
    victim = str(watched / "victim.bin")
    renderer = "lvmm.nets.renderer.Renderer"
    return {
        "write_image": {
            "class_path": "lvmm.media.write_image",
            "init_args": {"path": str(watched / "new.png"), "image": [[[1, 2, 3]]]},
        },
        "atomic_write_bytes": {
            "class_path": "lvmm.media.atomic_write_bytes",
            "init_args": {"path": victim, "data": "x"},
        },
        "save_networks": {"class_path": "lvmm.checkpoint.save_networks", "init_args": {"path": victim, "networks": {}}},
        "write_shards": {
            "class_path": "lvmm.datasets.writer.write_shards",
            "init_args": {"sources": [], "out_dir": str(watched / "shards"), "name": "x", "settings": None},
        },
        "load_photo download_all": {
            "class_path": "lvmm.datasets.procedural.load_photo",
            "init_args": {"name": "download_all"},
        },
        "nested in init_args": {
            "class_path": renderer,
            "init_args": {
                "width": {"class_path": "lvmm.checkpoint.save_networks", "init_args": {"path": victim, "networks": {}}}
            },
        },
        "nested in a list": {
            "class_path": renderer,
            "init_args": {
                "width": [
                    {"class_path": "lvmm.media.write_image", "init_args": {"path": victim, "image": [[[0, 0, 0]]]}}
                ]
            },
        },
        "nested two levels": {
            "class_path": renderer,
            "init_args": {
                "width": {
                    "a": {"class_path": "lvmm.media.atomic_write_bytes", "init_args": {"path": victim, "data": "x"}}
                }
            },
        },
        "module attribute chain": {
            "class_path": "lvmm.checkpoint.importlib.import_module",
            "init_args": {"name": "os"},
        },
        "re-exported module": {"class_path": "lvmm.checkpoint.torch", "init_args": {}},
        "stdlib": {"class_path": "os.system", "init_args": {"command": f"touch {victim}"}},
        "prefix trick": {"class_path": "lvmmx.evil.Class", "init_args": {}},
        "double dot": {"class_path": "lvmm..os.system", "init_args": {}},
        "dunder": {"class_path": "lvmm.checkpoint.__builtins__", "init_args": {}},
        "mixin, not a network": {"class_path": "lvmm.checkpoint.Configurable", "init_args": {}},
        "not a string": {"class_path": ["lvmm.media.write_image"], "init_args": {}},
        "unknown argument": {"class_path": renderer, "init_args": {"width": 8, "path": victim}},
        "init_args not a mapping": {"class_path": renderer, "init_args": ["x"]},
        "absurd size": {"class_path": renderer, "init_args": {"width": 1_000_000, "num_res_blocks": 1}},
        "bad value": {"class_path": renderer, "init_args": {"width": -5}},
    }


@pytest.fixture
def watched(tmp_path, monkeypatch):
    """A folder with a file a payload would overwrite, and a recorder on every function a payload names."""
    folder = tmp_path / "watched"
    (folder / "shards").mkdir(parents=True)
    (folder / "victim.bin").write_bytes(b"precious")
    (folder / "shards" / "x-000000.tar").write_bytes(b"not written by the writer")
    calls = []
    import skimage.data

    import lvmm.checkpoint
    import lvmm.datasets.procedural
    import lvmm.datasets.writer
    import lvmm.media

    for module, name in [
        (skimage.data, "download_all"),
        (lvmm.media, "write_image"),
        (lvmm.media, "atomic_write_bytes"),
        (lvmm.checkpoint, "save_networks"),
        (lvmm.datasets.writer, "write_shards"),
        (lvmm.datasets.procedural, "load_photo"),
    ]:
        monkeypatch.setattr(module, name, lambda *a, __n=name, **k: calls.append(__n))
    return folder, calls


@pytest.mark.parametrize("container", ["safetensors", "ckpt"])
def test_hostile_class_paths_are_refused_without_side_effects(watched, tmp_path, container):
    folder, calls = watched
    before = snapshot(folder)
    for what, config in hostile_configs(folder).items():
        path = tmp_path / f"{re.sub(r'[^a-z]+', '_', what)}.{container}"
        (write_safetensors if container == "safetensors" else write_ckpt)(path, {"net": config})
        with pytest.raises(CheckpointError) as err:
            load_networks(path)
        assert str(path) in str(err.value), what
        with pytest.raises(CheckpointError):
            build(config)
    assert calls == [], f"a payload reached {calls}"
    assert snapshot(folder) == before


def test_size_is_checked_on_the_meta_device_before_allocating(tmp_path, monkeypatch):
    """A 4000-channel renderer in a tiny file: refused by its shapes, and never built on a real device."""
    from lvmm.nets.renderer import Renderer

    devices = []
    init = Renderer.__init__

    def recording_init(self, *args, **kwargs):
        devices.append(torch.get_default_device().type)
        init(self, *args, **kwargs)

    monkeypatch.setattr(Renderer, "__init__", recording_init)
    path = write_safetensors(
        tmp_path / "wide.safetensors",
        {"renderer": {"class_path": "lvmm.nets.renderer.Renderer", "init_args": {"width": 1000, "num_res_blocks": 1}}},
    )
    assert path.stat().st_size < 1000
    with pytest.raises(CheckpointError, match="state dict does not match"):
        load_networks(path)
    assert devices == ["meta"]
    with pytest.raises(CheckpointError, match="parameters and buffers"):
        build({"class_path": "lvmm.nets.renderer.Renderer", "init_args": {"width": 1_000_000, "num_res_blocks": 1}})


def test_an_honest_checkpoint_still_round_trips(tmp_path):
    from lvmm.nets.renderer import Renderer

    net = Renderer(width=4, num_res_blocks=1)
    path = save_networks(tmp_path / "ok.safetensors", {"renderer": net})
    got = load_networks(path)["renderer"]
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), got.state_dict().values()))
    assert [p.name for p in tmp_path.iterdir()] == ["ok.safetensors"]  # no temporary left behind


def test_every_malformed_file_is_one_checkpoint_error(tmp_path):
    good = write_safetensors(
        tmp_path / "good.safetensors", {"x": {"class_path": "lvmm.nets.renderer.Renderer", "init_args": {}}}
    )
    data = good.read_bytes()
    cases = {
        "truncated.safetensors": data[: len(data) // 2],
        "junk.safetensors": b"not a safetensors file" * 8,
        "empty.safetensors": b"",
        "empty.ckpt": b"",
        "junk.ckpt": b"PK\x03\x04 nonsense",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
    torch.save(torch.zeros(3), tmp_path / "bare_tensor.ckpt")
    torch.save({"lvmm_networks": {}}, tmp_path / "no_state_dict.ckpt")
    torch.save({"lvmm_networks": {}, "state_dict": {"w": "not a tensor"}}, tmp_path / "bad_state.ckpt")
    torch.save({"lvmm_networks": {}, "state_dict": {}, "obj": Path("x")}, tmp_path / "pickled_object.ckpt")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "bad_json.safetensors"), metadata={"lvmm_networks": "{not json"})
    save_file({"x": torch.zeros(1)}, str(tmp_path / "json_list.safetensors"), metadata={"lvmm_networks": "[1, 2]"})
    save_file({"x": torch.zeros(1)}, str(tmp_path / "no_meta.safetensors"))
    files = sorted(p for p in tmp_path.iterdir() if p.name != "good.safetensors")
    assert len(files) == 12
    for path in files:
        with pytest.raises(CheckpointError) as err:
            read_checkpoint(path)
        assert str(path) in str(err.value)


def test_lightning_hyperparameters_are_checked_before_any_import(tmp_path, monkeypatch):
    evil = tmp_path / "evilmod_lvmm_drill.py"
    evil.write_text(f"open({str(tmp_path / 'imported')!r}, 'w').write('x')\nclass Evil: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for hp in [
        {"_class_path": "evilmod_lvmm_drill.Evil"},
        {"_class_path": "lvmm.stages.stage_one.StageOne", "flow": {"class_path": "evilmod_lvmm_drill.Evil"}},
        {"_class_path": "lvmm.media.write_image"},
    ]:
        torch.save({"state_dict": {}, "hyper_parameters": hp}, tmp_path / "evil.ckpt")
        with pytest.raises(CheckpointError, match="hyper-parameters"):
            check_hyperparameters(tmp_path / "evil.ckpt")
    assert "evilmod_lvmm_drill" not in sys.modules and not (tmp_path / "imported").exists()
    torch.save(
        {
            "state_dict": {},
            "hyper_parameters": {
                "_class_path": "lvmm.stages.stage_one.StageOne",
                "flow": {"class_path": "lvmm.nets.flow_predictor.FlowPredictor"},
            },
        },
        tmp_path / "ok.ckpt",
    )
    check_hyperparameters(tmp_path / "ok.ckpt")


def test_torch_floor_excludes_weights_only_bypasses():
    text = (REPO / "setup.py").read_text()
    floor = re.search(r'"torch>=(\d+)\.(\d+)', text)
    assert floor and (int(floor.group(1)), int(floor.group(2))) >= (2, 10)


def test_pipe_and_url_shard_specs_are_refused_everywhere(tmp_path):
    marker = tmp_path / "ran"
    specs = [
        f"pipe:touch {marker}; echo http://x",
        "https://example.com/a-{000..001}.tar",
        f"file:{tmp_path}/a.tar",
        f"s3://bucket/a.tar::{tmp_path}/b.tar",
    ]
    for spec in specs:
        with pytest.raises(ValueError, match="refusing"):
            expand_shards(spec)
    assert expand_shards("pipe:cat x", allow_remote=True) == ["pipe:cat x"]
    from lvmm.cli import encode_motion

    with pytest.raises(SystemExit, match="refusing"):
        encode_motion.expand_shards([specs[0]])
    from lvmm.evaluation import benchmark as evaluate

    with pytest.raises(evaluate.EvaluationError, match="refusing"):
        evaluate.expand_shards([specs[0]])
    assert not marker.exists()
