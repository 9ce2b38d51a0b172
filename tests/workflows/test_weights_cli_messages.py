"""``vkit weights inspect`` / ``convert`` as a new user meets them: run:ID fitted with the run's own backbone config,
a file nothing fits said so, a ``--set`` without a value explained with a backbone argument."""
from __future__ import annotations

import json

from safetensors.torch import save_file
from vkit_cli import vkit, vkit_main

from vkit.core.backbones import TinyC3D
from vkit.core.weights.formats import read_weights


def _pretrain_run(tmp_path, monkeypatch, widths, input=None):
    """A `vkit pretrain` run's files (weights of TinyC3D(widths=(4, 8)), sidecar recording ``widths``) behind run:4."""
    import vkit.core.weights.run_ref as run_ref
    from vkit.core.store import open_store

    monkeypatch.setenv("COLUMNS", "250")  # lines unwrapped, as vkit_cli's subprocesses get them
    db = f"sqlite:///{tmp_path / 'x.db'}"
    open_store(db)
    path = tmp_path / "backbone.safetensors"
    save_file(dict(TinyC3D(widths=(4, 8)).state_dict()), str(path))
    sidecar = dict(backbone=dict(type="TinyC3D", widths=widths), input=input or dict(mode="rgb"))
    if input == "volume":  # a scan run: no input recorded, the backbone's modality says it
        sidecar.update(input=None, backbone_info=dict(modality="volume"))
    path.with_suffix(".json").write_text(json.dumps(sidecar), encoding="utf-8")
    monkeypatch.setattr(run_ref, "resolve_run_weights", lambda ref, store: (path, read_weights(path).sha256))
    return db


def test_inspect_run_reference_fits_the_backbone_the_run_recorded(tmp_path, monkeypatch, capsys):
    # TinyC3D's default widths (16, 32, 48) do not take these weights; the run's own config does, and `use:`
    # names run:4 (its sha256 and input checks), not the resolved path.
    db = _pretrain_run(tmp_path, monkeypatch, [4, 8])
    code, out, err = vkit_main(capsys, "--db", db, "weights", "inspect", "run:4", "--backbone", "TinyC3D")
    assert code == 0, err
    assert "pretrained by run:4 for {'type': 'TinyC3D', 'widths': [4, 8]} on input 'rgb'" in out
    assert "use: dict(type='TinyC3D', widths=[4, 8], pretrained='run:4')" in out
    assert "none fits" not in out
    code, out, err = vkit_main(capsys, "--db", db, "weights", "inspect", "run:4", "--backbone", "TinyC3D", "--json")
    info = json.loads(out)
    assert info["run"] == dict(ref="run:4", backbone=dict(type="TinyC3D", widths=[4, 8]), input="rgb")
    first = info["fits"][0]
    assert (first["backbone"], first["variant"], first["status"]) == ("TinyC3D", dict(widths=[4, 8]), "fits")
    assert (first["matched"], first["missing"], first["unexpected"]) == (12, 0, 0)
    assert info["fits"][1]["status"] == "partial"  # the default TinyC3D, as before


def test_inspect_run_reference_whose_recorded_config_does_not_load_says_why(tmp_path, monkeypatch, capsys):
    db = _pretrain_run(tmp_path, monkeypatch, [4, 16])
    code, out, err = vkit_main(capsys, "--db", db, "weights", "inspect", "run:4", "--backbone", "TinyC3D")
    assert code == 0, err
    assert "run:4's weights do not load into the backbone config the run recorded: CheckpointError" in out
    assert "use:" not in out


def test_inspect_a_file_nothing_fits_says_so(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    path = tmp_path / "small.safetensors"
    save_file(dict(TinyC3D(widths=(4, 8)).state_dict()), str(path))
    code, out, err = vkit_main(capsys, "weights", "inspect", str(path), "--backbone", "TinyC3D")
    assert code == 0, err
    assert "closest backbones (none fits)" in out
    assert "no registered backbone, built with its defaults or the variants listed, takes every key" in out
    assert "use:" not in out


def test_convert_set_without_a_value_names_a_backbone_argument(tmp_path):
    path = tmp_path / "small.safetensors"
    save_file(dict(TinyC3D(widths=(4, 8)).state_dict()), str(path))
    proc = vkit("weights", "convert", str(path), "--backbone", "TinyC3D", "--set", "widths", "--out",
                str(tmp_path / "o.safetensors"), cwd=tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "--set 'widths': expected ARG=VALUE, an argument of TinyC3D such as depth=10" in proc.stderr
    assert "train.epochs" not in proc.stderr and not (tmp_path / "o.safetensors").exists()


def test_inspect_unknown_backbone_is_an_error_not_no_match(tmp_path):
    path = tmp_path / "small.safetensors"
    save_file(dict(TinyC3D(widths=(4, 8)).state_dict()), str(path))
    proc = vkit("weights", "inspect", str(path), "--backbone", "TinyC3d", cwd=tmp_path, check=False)
    assert proc.returncode == 1, proc.stdout
    assert "--backbone 'TinyC3d': not a registered backbone (did you mean 'TinyC3D'?)" in proc.stderr
    assert "matches" not in proc.stdout


def test_inspect_prefix_that_matches_nothing_names_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    path = tmp_path / "small.safetensors"
    save_file(dict(TinyC3D(widths=(4, 8)).state_dict()), str(path))
    code, out, err = vkit_main(capsys, "weights", "inspect", str(path), "--backbone", "TinyC3D", "--prefix", "backbone.")
    assert code == 0, err
    assert "--backbone TinyC3D: backbone 'TinyC3D': small.safetensors: no key of the file names a key of the model " \
           "after stripping 'backbone.'" in out


def test_inspect_says_when_several_prefixes_fit(tmp_path, capsys, monkeypatch):
    # the same weights under 'backbone.' and 'module.backbone.': was "no key of this file matches"
    monkeypatch.setenv("COLUMNS", "250")
    state = TinyC3D().state_dict()  # its default widths: each prefix alone fits it exactly
    path = tmp_path / "two.safetensors"
    save_file({f"{p}{k}": v.clone() for k, v in state.items() for p in ("backbone.", "module.backbone.")}, str(path))
    code, out, err = vkit_main(capsys, "weights", "inspect", str(path), "--backbone", "TinyC3D")
    assert code == 0, err
    assert "several key prefixes fit the file ('backbone.', 'module.backbone.'); name one with pretrained_prefix" in out
    code, out, err = vkit_main(capsys, "weights", "inspect", str(path), "--backbone", "TinyC3D", "--prefix",
                               "module.backbone.", "--json")
    assert code == 0, err
    assert json.loads(out)["fits"][0]["status"] == "fits" and json.loads(out)["fits"][0]["prefix"] == "module.backbone."


def test_inspect_run_reference_of_a_scan_run_says_volume(tmp_path, monkeypatch, capsys):
    db = _pretrain_run(tmp_path, monkeypatch, [4, 8], input="volume")
    code, out, err = vkit_main(capsys, "--db", db, "weights", "inspect", "run:4", "--backbone", "TinyC3D", "--json")
    assert code == 0, err
    assert json.loads(out)["run"]["input"] == "volume"


def test_convert_run_reference_reads_the_db_store(tmp_path, monkeypatch, capsys):
    # `vkit --db URL weights convert run:4` looked run 4 up in ./vkit.db (the default store), not in URL
    db = _pretrain_run(tmp_path, monkeypatch, [4, 8])
    import vkit.core.weights.run_ref as run_ref

    seen = []
    resolve = run_ref.resolve_run_weights
    monkeypatch.setattr(run_ref, "resolve_run_weights", lambda ref, store: seen.append(store.url) or resolve(ref, store))
    monkeypatch.chdir(tmp_path / "..")
    out = tmp_path / "o.safetensors"
    code, _, err = vkit_main(capsys, "--db", db, "weights", "convert", "run:4", "--backbone", "TinyC3D", "--set",
                             "widths=[4,8]", "--out", str(out))
    assert code == 0, err
    assert seen and all("x.db" in str(url) for url in seen) and out.is_file()
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f:
        assert f.metadata()["source"] == "backbone.safetensors"


def test_convert_no_strict_says_which_tensors_were_skipped(tmp_path, capsys, monkeypatch):
    # widths (4, 8) weights into widths (4, 16): the second block's shapes differ; --no-strict wrote the file and
    # said "0 missing, 0 unexpected" without the skipped tensors
    import torch

    src = tmp_path / "src.pth"
    torch.save(TinyC3D(widths=(4, 8)).state_dict(), src)
    out = tmp_path / "o.safetensors"
    monkeypatch.setenv("COLUMNS", "250")
    code, stdout, err = vkit_main(capsys, "weights", "convert", str(src), "--backbone", "TinyC3D", "--set",
                                  "widths=[4,16]", "--no-strict", "--out", str(out))
    assert code == 0, err
    first, second = stdout.splitlines()[:2]
    assert "0 missing, 0 unexpected" in first and " skipped)" in first and ", 0 skipped)" not in first
    assert "tensors of --out keep TinyC3D's initialisation, not the file's (missing, or shape differs: first " in second
    code, _, err = vkit_main(capsys, "weights", "convert", str(src), "--backbone", "TinyC3D", "--set", "widths=[4,16]",
                             "--out", str(tmp_path / "s.safetensors"))
    assert code == 1 and "shape" in err


def test_inspect_hides_torch_meshgrid_warning_of_backbones_built_for_real(tmp_path, capsys, monkeypatch):
    # nothing fits -> mmaction2's Swin3D is built for real, and torch.meshgrid's UserWarning reached the terminal
    # (building Swin3D takes ~20 s here, so the warning is raised by a stand-in for the fitting step)
    import warnings

    import vkit.workflows.weights as weights_cmd

    real = weights_cmd.inspect_weights

    def noisy(*args, **kwargs):
        warnings.warn("torch.meshgrid: in an upcoming release, it will be required to pass the indexing argument.",
                      UserWarning, stacklevel=1)
        return real(*args, **kwargs)

    monkeypatch.setattr(weights_cmd, "inspect_weights", noisy)
    path = tmp_path / "small.safetensors"
    save_file(dict(TinyC3D(widths=(4, 8)).state_dict()), str(path))
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        code, _, err = vkit_main(capsys, "weights", "inspect", str(path), "--backbone", "TinyC3D")
    assert code == 0, err
    assert not [w for w in seen if "meshgrid" in str(w.message)] and "meshgrid" not in err
