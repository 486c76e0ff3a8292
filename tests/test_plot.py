"""`dfm plot`: the PNG is written whole and decodes, panels match the varying parameters, errors name the
valid columns, and merely importing the module does not pull in matplotlib."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dfm.app.plot import build_figure, plot_table, varying_columns
from dfm.contract.table import FrameTable, Settings

N = 40


def _table(frames: int = N, cadence: int = 2) -> FrameTable:
    t = np.arange(frames)
    prompts = np.array(["a robot in a field of sunflowers at dawn"] * frames, dtype=object)
    prompts[frames // 2:] = "a sports car on the beach"
    columns = {
        "frame": t.astype(np.int64),
        "time": t / 10.0,
        "zoom": 1.0 + 0.01 * np.sin(t / 5),
        "angle": np.zeros(frames),  # constant: no panel
        "strength": np.where(t < frames // 2, 0.65, 0.5),
        "steps": np.full(frames, 25, dtype=np.int64),  # constant int: no panel
        "seed": (42 + t // cadence).astype(np.int64),
        "effective_steps": np.where(t % cadence == 0, 8, 0).astype(np.int64),
        "diffused": t % cadence == 0,
        "prompt": prompts,
        "negative_prompt": np.array([""] * frames, dtype=object),
    }
    return FrameTable(columns, Settings({"fps": 10.0, "size": (512, 512)}), source_path="scenes/demo.dfm")


def _decode(path: Path) -> np.ndarray:
    import matplotlib.image

    return matplotlib.image.imread(path)


def test_varying_columns_skips_constants_text_and_bookkeeping() -> None:
    assert varying_columns(_table()) == ["zoom", "strength", "seed", "effective_steps"]


def test_png_is_written_and_decodes(tmp_path: Path) -> None:
    out = plot_table(_table(), tmp_path / "plot.png")
    assert out == tmp_path / "plot.png"
    image = _decode(out)
    assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 200
    assert image.std() > 0.01  # something was drawn, not a blank canvas
    assert [p.name for p in tmp_path.iterdir()] == ["plot.png"]  # no temporary file left behind


def test_one_panel_per_varying_parameter() -> None:
    table = _table()
    fig, panels = build_figure(table)
    assert [ax.get_ylabel() for ax in panels] == varying_columns(table)
    # the seconds axis is a child of the top panel, not a panel of its own
    assert len(fig.axes) == len(varying_columns(table))


def test_requested_params_in_requested_order() -> None:
    _, panels = build_figure(_table(), ["strength", "angle"])
    assert [ax.get_ylabel() for ax in panels] == ["strength", "angle"]


def test_unknown_param_lists_valid_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="zooom") as err:
        plot_table(_table(), tmp_path / "x.png", ["zoom", "zooom"])
    assert "valid names" in str(err.value) and "strength" in str(err.value)
    assert not (tmp_path / "x.png").exists()


def test_text_column_is_not_plottable(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="prompt"):
        plot_table(_table(), tmp_path / "x.png", ["prompt"])


def test_prompt_cuts_are_marked_and_labelled() -> None:
    fig, panels = build_figure(_table())
    cut_lines = [ln for ln in panels[0].get_lines() if list(ln.get_xdata()) in ([0, 0], [N // 2, N // 2])]
    assert len(cut_lines) == 2
    labels = [t.get_text() for t in panels[0].texts]
    assert any(label.startswith("a sports car") for label in labels)
    assert any(label.endswith("…") for label in labels)  # the long first prompt is shortened


def test_diffused_frames_are_dotted() -> None:
    _, panels = build_figure(_table(cadence=4))
    dots = [ln for ln in panels[0].get_lines() if ln.get_label() == "diffused frame"]
    assert len(dots) == 1 and list(dots[0].get_xdata()) == list(range(0, N, 4))


def test_seconds_axis_uses_fps() -> None:
    fig, panels = build_figure(_table())
    assert fig.get_suptitle().startswith("demo.dfm")
    assert "10 fps" in fig.get_suptitle()
    (seconds,) = [c for c in panels[0].child_axes]
    assert seconds.get_xlabel() == "seconds"


def test_static_scene_still_plots(tmp_path: Path) -> None:
    frames = 5
    table = FrameTable({"frame": np.arange(frames), "zoom": np.ones(frames)}, Settings({"fps": 15}))
    assert varying_columns(table) == []
    assert _decode(plot_table(table, tmp_path / "static.png")).size > 0


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        plot_table(_table(), tmp_path / "plot.nosuchformat")
    assert list(tmp_path.iterdir()) == []


def test_compiled_scene_plots(tmp_path: Path) -> None:
    api = pytest.importorskip("dfm.api")
    if not hasattr(api, "compile_text"):
        pytest.skip("dfm.api.compile_text is not there yet")
    scene = (
        "dfm 1\nmode 2d\nfps 12\nframes 48\ncadence 3\n"
        'prompt 0 "a lighthouse"\nprompt 24 "a storm"\n'
        "zoom 0:(1.0025+0.002*sin(1.25*3.14*t/30))\nangle 0:(0), 24:(3)\n"
    )
    table = api.compile_text(scene, "lighthouse.dfm")
    names = varying_columns(table)
    assert "zoom" in names and "angle" in names
    fig, panels = build_figure(table)
    assert len(panels) == len(names)
    assert _decode(plot_table(table, tmp_path / "lighthouse.png")).size > 0


def test_import_does_not_load_matplotlib() -> None:
    code = "import sys, dfm.app.plot; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_png_follows_the_umask_and_a_rewrite_keeps_its_mode(tmp_path: Path) -> None:
    """Like every output of dfm (contract/files.py), not the 0600 of the temporary file it is written to."""
    import os
    import stat

    mask = os.umask(0o022)
    os.umask(mask)
    out = plot_table(_table(), tmp_path / "plot.png")
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask
    out.chmod(0o640)
    plot_table(_table(), out)
    assert stat.S_IMODE(out.stat().st_mode) == 0o640


def test_an_unknown_param_records_and_writes_nothing(tmp_path: Path, monkeypatch, capsys) -> None:
    from dfm.app.cli import main

    (tmp_path / "s.dfm").write_text('dfm 1\nframes 4\nprompt 0 "x"\nzoom 0:(1.0), 3:(1.05)\n')
    monkeypatch.chdir(tmp_path)
    assert main(["plot", "s.dfm", "--params", "zoom,nosuch"]) == 2
    assert "nosuch" in capsys.readouterr().err and not (tmp_path / "outputs").exists()
