"""Never lose a user's work: a failed re-render leaves the previous render as it was; dfm removes only
files it wrote; a folder that holds no dfm render is refused; a damaged or deleted frame before the
checkpoint is re-rendered on its own; an unwritable folder is a RenderError. Real renders of the tiny
model."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from render_outputs import TIMED, Boom, snapshot, stop_at
from tiny_models import make_table

from dfm.runtime import resume
from dfm.runtime.errors import RenderError
from dfm.runtime.render import render


def table2d(tiny_models, n: int = 6):
    return make_table(n, model=str(tiny_models["folder"]), mode="2d", cadence=2, zoom=1.02)


@pytest.fixture(scope="module")
def finished(tiny_models, tmp_path_factory):
    """A finished 2D render (frames, video, table.csv, manifest.json) and its files."""
    table = table2d(tiny_models)
    out = tmp_path_factory.mktemp("finished")
    render(table, out, device="cpu")
    files = snapshot(out)
    assert "video.mp4" in files and "manifest.json" in files and "frames/00005.png" in files
    return table, out, files


def copy_of(finished, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(finished[1], out)
    return out


@pytest.fixture
def broken_model(tiny_models, tmp_path):
    """A model folder that resolves but fails to load: the unet's weights are cut short."""
    folder = tmp_path / "broken"
    shutil.copytree(tiny_models["folder"], folder)
    for weights in (folder / "unet").glob("*.safetensors"):
        weights.write_bytes(weights.read_bytes()[:100])
    return folder


def test_a_rerender_whose_model_is_missing_leaves_the_render_as_it_was(finished, tiny_models, tmp_path):
    out = copy_of(finished, tmp_path)
    table = make_table(6, model=str(tmp_path / "no-such-model"), mode="2d")
    with pytest.raises(RenderError):
        render(table, out, device="cpu")
    assert snapshot(out) == finished[2]


def test_a_rerender_whose_model_fails_to_load_leaves_the_render_as_it_was(finished, broken_model, tmp_path):
    out = copy_of(finished, tmp_path)
    table = make_table(4, model=str(broken_model), mode="2d")
    with pytest.raises(RenderError):
        render(table, out, device="cpu")
    assert snapshot(out) == finished[2]


def test_a_failed_first_render_leaves_no_folder_behind(broken_model, tmp_path):
    with pytest.raises(RenderError):
        render(make_table(2, model=str(broken_model)), tmp_path / "new", device="cpu")
    assert not (tmp_path / "new").exists()


def test_a_rerender_with_fewer_frames_removes_only_dfm_s_frames(finished, tiny_models, tmp_path):
    out = copy_of(finished, tmp_path)
    foreign = {
        "notes.tmp": b"mine",
        ".x.tmp": b"mine too",
        ".table.csv.tmp": b"not dfm's name: no random part",
        "frames/00099.png": b"a frame of mine",
        "frames/.00001.png.tmp": b"not dfm's temp name",
        "frames/keep.txt": b"mine",
        ".dfm-state/mine.txt": b"mine",
    }
    for name, data in foreign.items():
        (out / name).parent.mkdir(exist_ok=True)
        (out / name).write_bytes(data)
    killed = {"frames/.00002.png.ab_cd123.tmp": b"half", ".manifest.json.zz9yy8xx.tmp": b"half", ".video.tmp.mp4": b"x",
              ".video.audio.tmp.mp4": b"x"}  # the video and its soundtrack pass (encoder.temp_paths)
    for name, data in killed.items():
        (out / name).write_bytes(data)
    table = table2d(tiny_models, 3)
    report = render(table, out, device="cpu")
    assert report.frames == 3
    files = snapshot(out)
    assert {name: files.get(name) for name in foreign} == foreign  # nothing of the user's is touched
    assert not [name for name in killed if name in files]  # dfm's own temporary files are gone
    assert sorted(n for n in files if n.startswith("frames/") and n.endswith(".png")) == [
        "frames/00000.png", "frames/00001.png", "frames/00002.png", "frames/00099.png"
    ]
    assert not resume.state_path(out).exists() and not resume.owner_path(out).exists()
    ref = tmp_path / "ref"
    render(table, ref, device="cpu")
    want = {n: d for n, d in snapshot(ref).items() if n not in TIMED}
    assert {n: files.get(n) for n in want} == want


def test_a_folder_that_holds_no_dfm_render_is_refused(tiny_models, tmp_path):
    out = tmp_path / "photos"
    (out / "frames").mkdir(parents=True)
    (out / "frames/00000.png").write_bytes(b"my photo")
    (out / "manifest.json").write_text('{"not": "dfm"}')
    before = snapshot(out)
    with pytest.raises(RenderError) as e:
        render(make_table(2, model=str(tiny_models["folder"])), out, device="cpu")
    assert "empty or new folder" in e.value.help
    assert snapshot(out) == before


def test_an_empty_existing_folder_is_fine(tiny_models, tmp_path):
    assert render(make_table(1, model=str(tiny_models["folder"])), tmp_path, device="cpu").frames == 1


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_damaged_frame_before_the_checkpoint_is_rendered_again(finished, tiny_models, tmp_path, damage):
    table, _, want = finished
    out = tmp_path / "out"
    with pytest.raises(Boom):
        render(table, out, device="cpu", progress=stop_at(4))
    assert resume.state_path(out).is_file()
    frame = out / "frames/00002.png"
    if damage == "truncate":
        frame.write_bytes(frame.read_bytes()[: frame.stat().st_size // 2])
    else:
        frame.unlink()
    report = render(table, out, device="cpu")
    assert report.frames == 6 and report.resumed_at == 0
    assert any("00002.png" in w and "frame 0" in w for w in report.warnings)
    got = snapshot(out)
    assert sorted(got) == sorted(want)
    assert [n for n in want if n not in TIMED and got[n] != want[n]] == []


def test_a_frame_damaged_after_the_checkpoint_is_simply_rewritten(finished, tiny_models, tmp_path):
    table, _, want = finished
    out = tmp_path / "out"
    with pytest.raises(Boom):
        render(table, out, device="cpu", progress=stop_at(3))
    (out / "frames/00004.png").write_bytes(b"\x89PNG cut")  # past the checkpoint: rendered anyway
    report = render(table, out, device="cpu")
    assert report.resumed_at == 3
    got = snapshot(out)
    assert [n for n in want if n not in TIMED and got[n] != want[n]] == []


def _read_only(out: Path, monkeypatch) -> None:
    out.chmod(0o500)
    if os.access(out, os.W_OK):  # root: chmod does not stop writes, so the OS's answer is simulated
        real = os.access
        monkeypatch.setattr(
            os, "access", lambda p, mode, **kw: False if Path(p) == out else real(p, mode, **kw)
        )


def test_a_read_only_folder_is_a_render_error(tiny_models, tmp_path, monkeypatch):
    out = tmp_path / "ro"
    out.mkdir()
    _read_only(out, monkeypatch)
    try:
        with pytest.raises(RenderError) as e:
            render(make_table(2, model=str(tiny_models["folder"])), out, device="cpu")
    finally:
        out.chmod(stat.S_IRWXU)
    assert "writable" in e.value.help
    assert list(out.iterdir()) == []


def test_a_read_only_parent_is_a_render_error(tiny_models, tmp_path, monkeypatch):
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    if os.access(parent, os.W_OK):  # root: simulate the refusal of mkdir
        real = Path.mkdir

        def mkdir(self, *a, **kw):
            if self.parent == parent:
                raise PermissionError(13, "Permission denied", str(self))
            return real(self, *a, **kw)

        monkeypatch.setattr(Path, "mkdir", mkdir)
    try:
        with pytest.raises(RenderError) as e:
            render(make_table(2, model=str(tiny_models["folder"])), parent / "out", device="cpu")
    finally:
        parent.chmod(stat.S_IRWXU)
    assert "writable" in e.value.help and "Permission denied" in e.value.message


def test_a_write_refused_after_loading_is_a_render_error_and_loses_nothing(finished, tmp_path, monkeypatch):
    out = copy_of(finished, tmp_path)

    def refuse(*a, **kw):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(resume, "write_owner", refuse)
    with pytest.raises(RenderError) as e:
        render(finished[0], out, device="cpu")
    assert "writable" in e.value.help
    assert snapshot(out) == finished[2]


def test_written_files_follow_the_umask_and_keep_their_mode(tiny_models, tmp_path):
    from dfm.contract.files import file_mode

    table = make_table(2, model=str(tiny_models["folder"]), mode="2d")
    render(table, tmp_path, device="cpu")
    new_mode = file_mode(tmp_path / "nothing-here")  # 0666 less the umask
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and {stat.S_IMODE(p.stat().st_mode) for p in files} == {new_mode}
    (tmp_path / "video.mp4").chmod(0o604)
    (tmp_path / "table.csv").chmod(0o600)
    render(table, tmp_path, device="cpu", restart=True)
    assert stat.S_IMODE((tmp_path / "video.mp4").stat().st_mode) == 0o604
    assert stat.S_IMODE((tmp_path / "table.csv").stat().st_mode) == 0o600


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_stills_render_again_from_the_damaged_frame(tiny_models, tmp_path, damage):
    table = make_table(5, model=str(tiny_models["folder"]), mode="none")  # stills: nothing is handed on
    full = render(table, tmp_path / "ref", device="cpu")
    want = snapshot(tmp_path / "ref")
    out = tmp_path / "out"
    with pytest.raises(Boom):
        render(table, out, device="cpu", progress=stop_at(4))
    frame = out / "frames/00002.png"
    if damage == "truncate":
        frame.write_bytes(frame.read_bytes()[:-20])
    else:
        frame.unlink()
    report = render(table, out, device="cpu")
    assert report.resumed_at == 2 and report.frames == 5 and report.unet_calls < full.unet_calls
    assert any("00002.png" in w and "from frame 2" in w for w in report.warnings)
    got = snapshot(out)
    assert sorted(got) == sorted(want)
    assert [n for n in want if n not in TIMED and got[n] != want[n]] == []


# ---- a frame damaged inside (its size and PNG end intact) -------------------------------------------------


def _damage_inside(path: Path) -> None:
    """60 bytes zeroed in the middle of the file: the size and the PNG end chunk stay as they were."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 60] = bytes(60)
    path.write_bytes(bytes(data))


def test_a_frame_damaged_inside_is_rendered_again_not_kept(finished, tiny_models, tmp_path):
    """dfm logs the sha256 of every frame it writes (.dfm-state/frames.sha256): a rerun does not keep a frame
    whose bytes changed, re-renders from it (2D: the frames after it start from it) to the bytes of the first
    render, and deletes nothing before that is decided."""
    from dfm.runtime.record import frame_intact, read_hashes
    from dfm.runtime.uptodate import kept_whole

    table, _, files = finished
    out = copy_of(finished, tmp_path)
    frame = out / "frames" / "00004.png"
    assert frame_intact(frame, read_hashes(out)[4])
    _damage_inside(frame)
    assert frame.stat().st_size == len(files["frames/00004.png"]) and not frame_intact(frame, read_hashes(out)[4])
    assert kept_whole(table, out, model=None, device="cpu", dtype="auto", speed=None, scene_path="",
                      allow_pickle=False) is None  # not "up to date"
    report = render(table, out, device="cpu")
    assert report.kept_frames == 4 and "frames 0–3 kept" in report.kept and "00004.png" in report.kept
    assert snapshot(out)["frames/00004.png"] == files["frames/00004.png"]
    assert {k: v for k, v in snapshot(out).items() if k.startswith("frames/") or k == "video.mp4"} == \
        {k: v for k, v in files.items() if k.startswith("frames/") or k == "video.mp4"}


def test_a_checkpoint_that_counts_on_a_frame_damaged_inside_is_not_continued(tiny_models, tmp_path):
    table = table2d(tiny_models)
    ref = tmp_path / "ref"
    render(table, ref, device="cpu")
    out = tmp_path / "out"
    with pytest.raises(Boom):
        render(table, out, device="cpu", progress=stop_at(4))
    _damage_inside(out / "frames" / "00001.png")
    found, why = resume.load(out, resume.read_record(out).fingerprint, len(table), (out / "frames",))
    assert found is None and "its bytes are not those dfm wrote" in why
    render(table, out, device="cpu")
    assert {k: v for k, v in snapshot(out).items() if k.startswith("frames/")} == \
        {k: v for k, v in snapshot(ref).items() if k.startswith("frames/")}


def test_the_digest_log_is_read_within_its_bound(tmp_path, monkeypatch):
    from dfm.runtime import record

    record.append_hashes(tmp_path, [(0, "a" * 64), (1, "b" * 64)])
    assert record.read_hashes(tmp_path) == {0: "a" * 64, 1: "b" * 64}
    monkeypatch.setattr(record, "HASHES_BYTES", 70)  # the first line and a torn part of the second
    assert record.read_hashes(tmp_path) == {0: "a" * 64}


def test_a_control_folder_of_a_render_from_before_the_manifest_listed_them_stays_dfms(tmp_path):
    """A manifest written before `control_frames` names its units: their folders holding only frames are dfm's;
    a folder holding anything else is the user's."""
    from dfm.runtime.errors import RenderError
    from dfm.runtime.outdir import check_names_are_dfms

    (tmp_path / "manifest.json").write_text(json.dumps({"dfm_manifest": 1, "controlnet": [{"unit": 1}]}))
    (tmp_path / "controlnet_1").mkdir()
    (tmp_path / "controlnet_1" / "00000.png").write_bytes(b"frame")
    check_names_are_dfms(tmp_path, {"controlnet_1": "save_control_frames"})
    (tmp_path / "controlnet_1" / "notes.txt").write_text("mine")
    with pytest.raises(RenderError, match="not written by dfm"):
        check_names_are_dfms(tmp_path, {"controlnet_1": "save_control_frames"})
