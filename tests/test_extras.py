"""Tests for mlabel.extras: one check for the optional extras, one line naming the extra."""

import sys
import tomllib
from pathlib import Path

import pytest

from mlabel import extras
from mlabel.cli import main
from mlabel.errors import ExtraMissing, MlabelError


@pytest.fixture
def fake_extra(monkeypatch):
    """An extra of two stdlib modules (one looked up, one imported) and one that does not exist."""
    modules = {"json": "json", "email.mime": "email", "mlabel_no_such_module": "no-such-package"}
    monkeypatch.setitem(extras.EXTRAS, "fake", modules)
    return "fake"


def test_require_names_the_package_and_the_extra_in_one_line(fake_extra):
    with pytest.raises(ExtraMissing) as caught:
        extras.require(fake_extra, "the fake task")
    message = str(caught.value)
    assert message == "the fake task needs the no-such-package package: pip install 'mlabel[fake]'"
    assert isinstance(caught.value, MlabelError)  # so the CLI prints it as one line, exit 2


def test_require_passes_when_the_packages_asked_for_are_present(fake_extra):
    assert extras.require(fake_extra, "task", ("json", "email.mime")) is None
    assert extras.missing(fake_extra, ("json", "email.mime")) is None
    assert extras.missing(fake_extra) == "no-such-package"


def test_a_submodule_that_fails_to_import_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)  # even after another test imported it
    assert extras.missing("ray") == "ray"
    monkeypatch.setitem(extras.EXTRAS, "ray", {"ray.data": "ray[data]"})
    with pytest.raises(ExtraMissing, match=r"needs the ray\[data\] package: .*'mlabel\[ray\]'"):
        extras.require("ray", "engine ray")


def test_every_extra_of_pyproject_is_in_the_table():
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    declared = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    assert set(extras.EXTRAS) == set(declared) - {"all", "dev"}


@pytest.mark.parametrize(
    ("argv", "module", "extra"),
    [
        (["serve", "MODEL"], "fastapi", "serve"),
        (["tune", "data.csv"], "optuna", "tune"),
        (["export", "MODEL", "--onnx"], "onnxruntime", "onnx"),
        (["predict", "MODEL", "data.csv", "-o", "out.csv", "--engine", "ray"], "ray", "ray"),
    ],
)
def test_cli_names_the_extra_to_install(argv, module, extra, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, module, None)  # imports fail as if not installed
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"pip install 'mlabel[{extra}]'" in err
    assert err.count("\n") == 1 and "Traceback" not in err
