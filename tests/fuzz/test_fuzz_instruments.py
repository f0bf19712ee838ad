"""Fuzzing instrument TOML files: mutated copies of the shipped ones and random documents."""

from __future__ import annotations

from importlib import resources

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lenghu.instruments.loader import load_instrument
from lenghu.instruments.model import Instrument

from ..faults.reliability import counted
from .guard import only_typed_errors
from .mutate import mutate_lines

SHIPPED = {name: (resources.files("lenghu.instruments") / "data" / f"{name}.toml").read_text()
           for name in ("generic", "kast_blue", "wfst")}

_scalar = st.one_of(st.integers(-10**20, 10**20).map(str), st.floats(allow_nan=True).map(repr),
                    st.text(max_size=20).map(lambda t: '"' + t.replace("\\", "").replace('"', "") + '"'),
                    st.sampled_from(['"1 adu"', '"-5 electron"', '"[0:0,1:2]"', '"[1:100000000000,1:1]"', "[]",
                                     "{}", "true", '"../../etc/passwd"', '"wfst"', '"nan electron/adu"', "1e308",
                                     '"1 m"', '"2.5 electron/adu"', "-1", "0"]))


@st.composite
def mutated_toml(draw) -> str:
    return mutate_lines(draw, SHIPPED[draw(st.sampled_from(sorted(SHIPPED)))].splitlines(), _scalar)


@pytest.mark.reliability(kind="fuzz", case="instrument TOML files: shipped files with lines deleted, duplicated, "
                                           "swapped, garbled, truncated or given random values",
                         promise="an Instrument or a ConfigError naming the file; nothing else")
@given(text=mutated_toml())
@counted
def test_mutated_instrument_files(text, tmp_path_factory):
    path = tmp_path_factory.mktemp("inst") / "camera.toml"
    path.write_text(text)
    result = only_typed_errors(load_instrument, path)
    if not isinstance(result, Instrument):
        assert str(path) in str(result) or "lenghu/instruments/data" in str(result), result


@pytest.mark.reliability(kind="fuzz", case="instrument TOML files: random bytes and random text",
                         promise="a ConfigError naming the file; nothing else")
@given(data=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
@counted
def test_random_instrument_files(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("inst") / "camera.toml"
    path.write_bytes(data)
    result = only_typed_errors(load_instrument, path)
    assert isinstance(result, Instrument) or str(path) in str(result), result


def test_an_extends_loop_is_a_config_error(tmp_path):
    from lenghu.errors import ConfigError

    (tmp_path / "a.toml").write_text(f'extends = "{tmp_path / "b.toml"}"\n')
    (tmp_path / "b.toml").write_text(f'extends = "{tmp_path / "a.toml"}"\n')
    with pytest.raises(ConfigError, match="loop"):
        load_instrument(tmp_path / "a.toml")


def test_a_shape_that_is_not_two_integers_is_a_config_error(tmp_path):
    """Regression (found by test_mutated_instrument_files): ``shape = ""`` raised IndexError."""
    from lenghu.errors import ConfigError

    path = tmp_path / "kast.toml"
    path.write_text(SHIPPED["kast_blue"].replace("shape = [350, 2048]", 'shape = ""'))
    assert 'shape = ""' in path.read_text()
    with pytest.raises(ConfigError, match="shape"):
        load_instrument(path)


def test_a_lost_detector_header_line_is_a_config_error(tmp_path):
    """Regression (found by the long fuzz run): without its ``[[detector]]`` line the amplifiers became
    a table of strings and the loader raised AttributeError."""
    from lenghu.errors import ConfigError

    path = tmp_path / "kast.toml"
    path.write_text(SHIPPED["kast_blue"].replace("[[detector]]\n", "", 1))
    with pytest.raises(ConfigError, match="detector"):
        load_instrument(path)


@pytest.mark.parametrize("line", ["position = [1]", "mosaic_gap = 5"])
def test_a_malformed_mosaic_position_or_gap_is_a_config_error(line, tmp_path):
    """Regression (found by the long fuzz run): IndexError from a one-element position or a scalar gap."""
    from lenghu.errors import ConfigError

    key = line.split(" =")[0]
    text = "\n".join(line if row.strip().startswith(key + " ") else row for row in SHIPPED["wfst"].splitlines())
    assert line in text
    path = tmp_path / "wfst.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError, match=key):
        load_instrument(path)
