"""The show file: a valid show loads into typed values; every error names the file, the line and the field."""

from __future__ import annotations

import pytest

from lenghu.viewer.app.kiosk.show import Chord, ShowError, load_show, locate
from tests.viewer.kiosk.conftest import make_show


def test_a_valid_show_loads_with_types_and_absolute_paths(tmp_path):
    show = load_show(make_show(tmp_path, idle=7, images=2))
    assert [s.name for s in show.scenes] == ["web", "image0", "image1"]
    assert show.idle_seconds == 7.0 and show.language == "zh" and show.size == (320, 180)
    assert show.admin_chord == Chord(frozenset({"ctrl", "alt", "shift"}), "k")
    assert show.quality.target_fps == 10 and show.quality.start_budget == 50000
    assert show.scenes[1].data[0] == (tmp_path / "image0.fits").resolve()
    assert show.scenes[0].caption.get("en") == "The cosmic web" and show.scenes[0].caption.get("zh") == "宇宙网"
    assert show.scenes[0].tour == "auto" and show.scenes[0].structures == 3
    # the scene's line is its [[scene]] header
    lines = (tmp_path / "show.toml").read_text().splitlines()
    assert lines[show.scenes[2].line - 1].strip() == "[[scene]]"


def test_the_shipped_example_show_is_valid():
    from tests.viewer.kiosk.conftest import REPO

    show = load_show(REPO / "shows" / "lenghu_sample" / "show.toml")
    assert [s.name for s in show.scenes] == ["cosmic-web", "wfst-field", "disk-cube"]
    assert all(s.caption.zh and s.caption.en for s in show.scenes)


def _error(tmp_path, text) -> ShowError:
    p = tmp_path / "bad.toml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ShowError) as info:
        load_show(p)
    return info.value


def _replace(tmp_path, old, new, **kw) -> str:
    text = make_show(tmp_path, **kw).read_text()
    assert old in text
    return text.replace(old, new, 1)


def line_of(text, needle):
    return next(i + 1 for i, line in enumerate(text.splitlines()) if needle in line)


def test_syntax_error_names_the_line(tmp_path):
    text = _replace(tmp_path, "idle_seconds = 5.0", "idle_seconds = = 5")
    err = _error(tmp_path, text)
    assert err.line == line_of(text, "idle_seconds") and "TOML syntax" in str(err)
    assert str(err).startswith(f"{tmp_path / 'bad.toml'}:{err.line}:")


def test_negative_duration_names_scene_line_and_field(tmp_path):
    text = _replace(tmp_path, 'name = "image0"\ndata = "image0.fits"\nduration = 30.0',
                    'name = "image0"\ndata = "image0.fits"\nduration = -3')
    err = _error(tmp_path, text)
    assert err.field == "scene[1].duration" and err.line == line_of(text, "duration = -3")
    assert "must be > 0" in str(err) and "-3" in str(err)


def test_missing_english_caption(tmp_path):
    text = _replace(tmp_path, 'caption = { zh = "图像0", en = "Image 0" }', 'caption = { zh = "图像0" }')
    err = _error(tmp_path, text)
    assert err.field == "scene[1].caption.en" and err.line == line_of(text, 'caption = { zh = "图像0" }')


@pytest.mark.parametrize("old,new,field,needle", [
    ("language = \"zh\"", "language = \"fr\"", "show.language", "language ="),
    ("admin_chord = \"ctrl+alt+shift+k\"", "admin_chord = \"escape\"", "show.admin_chord", "admin_chord"),
    ("admin_chord = \"ctrl+alt+shift+k\"", "admin_chord = \"ctrl+q\"", "show.admin_chord", "admin_chord"),
    ("target_fps = 10", "target_fps = \"fast\"", "quality.target_fps", "target_fps"),
    ("max_budget = 200000", "max_budget = 10", "quality.max_budget", "max_budget"),
    ("tour = \"still\"", "tour = \"spiral\"", "scene[0].tour", "spiral"),
    ("tour = \"still\"", "tour = \"still\"\nzoom = 3", "scene[0].zoom", "zoom = 3"),
    ("data = \"image0.fits\"", "data = \"nope.fits\"", "scene[0].data", "nope.fits"),
    ("data = \"image0.fits\"", "data = \"../elsewhere/image0.fits\"", "scene[0].data", "elsewhere"),
    ("name = \"image0\"", "name = \"a b\"", "scene[0].name", "a b"),
])
def test_semantic_errors_name_line_and_field(tmp_path, old, new, field, needle):
    text = _replace(tmp_path, old, new, web=False, images=2)
    err = _error(tmp_path, text)
    assert err.field == field, str(err)
    assert err.line == line_of(text, needle), str(err)


@pytest.mark.reliability(kind="security", case="a kiosk show file naming data outside its folder (../, absolute)",
                         promise="refused with the line and field unless allow_outside = true")
def test_paths_outside_the_show_folder_need_allow_outside(tmp_path):
    inner = tmp_path / "show"
    inner.mkdir()
    from tests.viewer.kiosk.conftest import write_image

    write_image(tmp_path / "outside.fits")
    text = make_show(inner, web=False).read_text().replace('data = "image0.fits"', 'data = "../outside.fits"')
    (inner / "show.toml").write_text(text)
    with pytest.raises(ShowError, match="outside the show folder"):
        load_show(inner / "show.toml")
    (inner / "show.toml").write_text(text.replace("allow_outside = false", "allow_outside = true"))
    assert load_show(inner / "show.toml").scenes[0].data[0] == (tmp_path / "outside.fits").resolve()


def test_no_scenes_and_duplicate_names(tmp_path):
    text = make_show(tmp_path, web=False).read_text()
    head = text.split("[[scene]]")[0]
    err = _error(tmp_path, head)
    assert err.field == "scene" and "no [[scene]]" in str(err)
    text2 = make_show(tmp_path, web=False, images=2).read_text().replace('name = "image1"', 'name = "image0"')
    err = _error(tmp_path, text2)
    assert err.field == "scene[1].name" and "duplicate" in str(err)


def test_not_utf8_and_missing_file(tmp_path):
    p = tmp_path / "latin1.toml"
    p.write_bytes(b"[show]\ntitle = 'caf\xe9'\n")
    with pytest.raises(ShowError, match="not UTF-8") as info:
        load_show(p)
    assert info.value.line == 2
    with pytest.raises(ShowError, match="cannot read"):
        load_show(tmp_path / "absent.toml")


def test_locate_finds_keys_in_the_right_table():
    text = "[show]\nidle_seconds = 1\n\n[[scene]]\nname = 'a'\n\n[[scene]]\nname = 'b'\nduration = 3\n"
    assert locate(text, "show", None, "idle_seconds") == 2
    assert locate(text, "scene", 1, "duration") == 9
    assert locate(text, "scene", 0, "duration") == 4  # absent there: the table's header
    assert locate(text, "scene", 1) == 7


def test_the_kiosk_model_imports_no_gl():
    import subprocess
    import sys

    code = ("import sys\n"
            "import lenghu.viewer.app.kiosk.show, lenghu.viewer.app.kiosk.machine, lenghu.viewer.app.kiosk.controller\n"
            "import lenghu.viewer.app.kiosk.structures, lenghu.viewer.app.kiosk.quality, lenghu.viewer.app.kiosk.usage\n"
            "import lenghu.viewer.app.kiosk.events_file, lenghu.viewer.app.kiosk.supervise\n"
            "import lenghu.commands.kiosk\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('vispy', 'OpenGL', 'PySide6')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_unreadable_data_and_wrong_tours_name_the_scene_line(tmp_path):
    from lenghu.viewer.app.kiosk.controller import KioskController

    path = make_show(tmp_path, web=False, images=2)
    (tmp_path / "image1.fits").write_text("not a FITS file")
    show = load_show(path)  # the file exists: the show parses
    with pytest.raises(ShowError) as info:
        KioskController(show, (320, 180)).preload()
    assert info.value.field == "scene[1].data" and info.value.line == show.scenes[1].line
    assert str(path) in str(info.value)
    write = __import__("tests.viewer.kiosk.conftest", fromlist=["write_image"]).write_image
    write(tmp_path / "image1.fits")
    path.write_text(path.read_text().replace('tour = "still"', 'tour = "auto"', 1))
    with pytest.raises(ShowError, match="needs particles") as info:
        KioskController(load_show(path), (320, 180))
    assert info.value.field == "scene[0].tour"
