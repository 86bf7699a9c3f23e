"""rainsynth.tomlfile: the one TOML reader, errors naming the file."""

from __future__ import annotations

import pytest

from rainsynth.compat import tomllib
from rainsynth.errors import ParamError, RainsynthError
from rainsynth.tomlfile import load_toml, loads_toml


def test_a_toml_file_reads_as_a_dict(tmp_path):
    path = tmp_path / "recipe.toml"
    path.write_text('source = "builtin"\npresets = ["light", "heavy"]\n[rain]\nrate = 5.0\n')
    assert load_toml(path) == {
        "source": "builtin",
        "presets": ["light", "heavy"],
        "rain": {"rate": 5.0},
    }


def test_bad_toml_names_the_file_and_keeps_the_cause(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("split = [\n")
    with pytest.raises(RainsynthError, match="not valid TOML") as error:
        load_toml(path)
    assert str(error.value).startswith(f"{path}: not valid TOML: ")
    assert isinstance(error.value.__cause__, tomllib.TOMLDecodeError)


def test_an_unreadable_file_is_named_with_the_callers_error(tmp_path):
    with pytest.raises(ParamError, match="cannot be read") as error:
        load_toml(tmp_path / "missing.toml", error=ParamError)
    assert str(tmp_path / "missing.toml") in str(error.value)
    assert isinstance(error.value.__cause__, FileNotFoundError)
    (tmp_path / "latin1.toml").write_bytes(b'name = "\xe9"\n')
    with pytest.raises(RainsynthError, match="latin1.toml: cannot be read"):
        load_toml(tmp_path / "latin1.toml")


def test_text_is_read_with_its_source_named():
    assert loads_toml("v = 1", "override") == {"v": 1}
    with pytest.raises(RainsynthError, match="^preset 'x': not valid TOML"):
        loads_toml("v = ", "preset 'x'")
