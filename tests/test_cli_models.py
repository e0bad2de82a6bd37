"""CLI of the model commands: errors are one line naming the problem, exit status 2."""

from __future__ import annotations

import pytest

from sightline.cli import main


@pytest.mark.parametrize("model", ["detector", "reid"])
def test_eval_refuses_a_training_seed(model, tmp_path, capsys):
    assert main(["eval", model, "--seed", "1003", "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "seed 1003 was used to train or validate" in err
    assert not any(tmp_path.iterdir())  # refused before rendering anything


def test_eval_with_missing_weights_names_the_file(tmp_path, capsys):
    missing = tmp_path / "none.pt"
    code = main(["eval", "detector", "--seed", "21", "--weights", str(missing)])
    assert code == 2
    assert str(missing) in capsys.readouterr().err


def test_run_with_a_broken_config_names_the_field(tmp_path, capsys):
    bad = tmp_path / "site.yaml"
    bad.write_text("version: 1\nname: x\ncameras: [{id: c1, source: a.mp4, fps: -1}]\n")
    assert main(["run", "--config", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "site.yaml" in err and "cameras[0]" in err
