"""Params and checkpoints on disk: any name round-trips, saves keep modes and clean up, resumes refuse cleanly."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import symdiff as sd
from symdiff import optim


def blobs(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    centers = np.array([[2.0, 0.0], [-2.0, 1.0], [0.0, -2.0]])
    return {"x": centers[y] + rng.normal(scale=0.6, size=(n, 2)), "y": y}


def classifier(classes=3, names=("h1", "out")):
    x = sd.Input("x", shape=(None, 2))
    y = sd.Input("y", shape=(None,), dtype="int64")
    h = sd.dense(x, 4, names[0], activation="tanh")
    return sd.softmax_cross_entropy(sd.dense(h, classes, names[1]), y)


def snapshot(params):
    return {k: v.copy() for k, v in params.items()}


def assert_unchanged(params, before):
    assert set(params) == set(before)
    for k, v in params.items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


def one_epoch_checkpoint(tmp_path):
    """A checkpoint of one Adam epoch of the classifier (seed 1), and its loss."""
    ckpt, loss = tmp_path / "c.npz", classifier()
    sd.fit(loss, sd.init_params(loss, seed=1), blobs(), optimizer=optim.Adam(lr=0.1), epochs=1, checkpoint=ckpt,
           progress=False)  # fmt: skip
    return ckpt, loss


def rewrite_meta(path, change):
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(str(arrays["meta"]))
    change(meta)
    arrays["meta"] = np.array(json.dumps(meta))
    np.savez(path, **arrays)


# -- save_params / load_params ------------------------------------------------------------------
def test_params_named_after_savez_arguments_round_trip_through_save_and_checkpoints(tmp_path) -> None:
    names = ["file", "allow_pickle", "arr_0", "meta", "args", "kwds"]
    params = {n: np.full(2, float(i)) for i, n in enumerate(names)}
    sd.save_params(params, tmp_path / "p.npz")
    back = sd.load_params(tmp_path / "p.npz")
    assert set(back) == set(names)
    assert_unchanged(back, params)
    x = sd.Input("x", shape=(None, 2))
    w, a = sd.Param("file", shape=(2,)), sd.Param("allow_pickle", shape=(2,))
    loss = sd.mean((x @ w + x @ a - 1.0) ** 2)
    ckpt = tmp_path / "c.npz"
    data = {"x": np.ones((4, 2))}
    params = {"file": np.zeros(2), "allow_pickle": np.ones(2)}
    sd.fit(loss, params, data, epochs=1, checkpoint=ckpt, progress=False)
    resumed = {"file": np.zeros(2), "allow_pickle": np.ones(2)}
    sd.fit(loss, resumed, data, epochs=1, checkpoint=ckpt, progress=False)
    assert_unchanged(resumed, params)


@pytest.mark.parametrize("content", [b"W = 1.0\n", b"", b"PK\x03\x04 not really a zip", b"\x93NUMPY\x01\x00garbage"])
def test_load_params_of_a_file_that_is_not_an_npz_says_so(tmp_path, content) -> None:
    (tmp_path / "w.txt").write_bytes(content)
    with pytest.raises(sd.InputError, match=r"'.*w\.txt' is not an \.npz file written by save_params"):
        sd.load_params(tmp_path / "w.txt")


def test_load_params_of_a_npy_file_says_what_it_reads(tmp_path) -> None:
    np.save(tmp_path / "w.npy", np.ones(3))
    with pytest.raises(sd.InputError, match=r"'.*w\.npy' holds a single array \(a \.npy file\), not named params"):
        sd.load_params(tmp_path / "w.npy")


def test_object_arrays_are_refused_at_save_time_and_nothing_is_written(tmp_path) -> None:
    ragged = np.empty(2, dtype=object)
    ragged[:] = [np.ones(2), np.ones(3)]
    with pytest.raises(sd.DTypeError, match="param 'W' is an object array"):
        sd.save_params({"b": np.ones(2), "W": ragged}, tmp_path / "p.npz")
    assert list(tmp_path.iterdir()) == []


def test_masked_params_with_masked_entries_are_refused_at_save_time_and_nothing_is_written(tmp_path) -> None:
    masked = np.ma.array([1.0, 2.0], mask=[False, True])
    with pytest.raises(sd.InputError, match=r"param 'W' is a masked array with masked entries.*value\.filled"):
        sd.save_params({"b": np.ones(2), "W": masked}, tmp_path / "p.npz")
    assert list(tmp_path.iterdir()) == []
    sd.save_params({"W": np.ma.array([1.0, 2.0])}, tmp_path / "p.npz")  # nothing masked: the values are the data
    np.testing.assert_array_equal(sd.load_params(tmp_path / "p.npz")["W"], [1.0, 2.0])


@pytest.mark.skipif(os.name != "posix", reason="needs POSIX symlinks and errors")
def test_os_errors_of_a_save_name_the_target_path_not_the_temporary_file(tmp_path) -> None:
    (tmp_path / "folder.npz").mkdir()
    (tmp_path / "loop_a.npz").symlink_to(tmp_path / "loop_b.npz")
    (tmp_path / "loop_b.npz").symlink_to(tmp_path / "loop_a.npz")
    for name, kind in [
        ("missing/p.npz", FileNotFoundError),
        ("folder.npz", IsADirectoryError),
        ("loop_a.npz", OSError),
    ]:
        target = str(tmp_path / name)
        with pytest.raises(kind, match=rf"^\[Errno \d+\] cannot save params to {re.escape(repr(target))}: \w") as info:
            sd.save_params({"W": np.ones(2)}, target)
        assert "symdiff-tmp" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.npz", "loop_a.npz", "loop_b.npz"]


@pytest.mark.skipif(os.name != "posix", reason="file modes and umask are POSIX")
def test_saving_keeps_the_targets_mode_and_never_touches_the_umask(tmp_path, monkeypatch) -> None:
    def no_umask(mask):
        raise AssertionError("os.umask changes the mode of files every thread creates")

    umask = os.umask(0o022)
    os.umask(umask)
    monkeypatch.setattr(os, "umask", no_umask)
    target = tmp_path / "p.npz"
    sd.save_params({"W": np.ones(2)}, target)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # what a plain open() gives
    target.chmod(0o600)
    sd.save_params({"W": np.zeros(2)}, target)
    assert target.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["p.npz"]


KILLED_SAVE = textwrap.dedent("""
    import os, sys, time
    import numpy as np
    import symdiff as sd

    def stuck(fd):  # the whole file is written: stop here, as a SIGKILL mid-save would
        print("written", flush=True)
        time.sleep(60)

    os.fsync = stuck
    sd.save_params({"W": np.ones(1_000_000)}, sys.argv[1])
""")


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and pid liveness are POSIX")
def test_a_save_killed_mid_write_leaves_a_temp_file_that_the_next_save_removes(tmp_path) -> None:
    target = tmp_path / "p.npz"
    sd.save_params({"W": np.zeros(3)}, target)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_SAVE, str(target)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "written"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    left = [p for p in tmp_path.iterdir() if p.name != "p.npz"]
    assert len(left) == 1 and left[0].stat().st_size > 8_000_000, "the killed save left its full-size temp file"
    np.testing.assert_array_equal(sd.load_params(target)["W"], np.zeros(3)), "the target is untouched"
    sd.save_params({"W": np.ones(3)}, target)
    assert [p.name for p in tmp_path.iterdir()] == ["p.npz"]


# -- resuming -------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["wider output layer", "missing meta entry", "foreign rng state", "invalid history"])
def test_a_refused_resume_changes_no_param(tmp_path, damage) -> None:
    ckpt, loss = one_epoch_checkpoint(tmp_path)
    if damage == "wider output layer":
        loss, needle = classifier(classes=4), "belongs to another model"
    elif damage == "missing meta entry":
        rewrite_meta(ckpt, lambda meta: meta.pop("rng"))
        needle = "its meta entry 'rng' is missing"
    elif damage == "invalid history":
        rewrite_meta(ckpt, lambda meta: meta.update(history={"loss": 5}))
        needle = "its meta entry 'history' is invalid"
    else:
        rewrite_meta(
            ckpt, lambda meta: meta.update(rng={"bit_generator": "MT19937", "state": {"key": [0] * 624, "pos": 0}})
        )
        needle = "foreign random-generator state"
    params = sd.init_params(loss, seed=2)
    before = snapshot(params)
    with pytest.raises(sd.InputError, match=needle):
        sd.fit(loss, params, blobs(), optimizer=optim.Adam(lr=0.1), epochs=2, checkpoint=ckpt, progress=False)
    assert_unchanged(params, before)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"batch_size": 16}, "batch_size=32, this run has batch_size=16"),
        ({"data": blobs(50)}, "examples=60, this run has examples=50"),
        ({"seed": 1}, "seed=0, this run has seed=1"),
    ],
)
def test_resuming_with_another_batch_size_data_length_or_seed_is_refused(tmp_path, change, needle) -> None:
    ckpt = tmp_path / "c.npz"
    loss = classifier()
    sd.fit(loss, sd.init_params(loss), blobs(), epochs=1, checkpoint=ckpt, progress=False)
    params = sd.init_params(loss, seed=3)
    before = snapshot(params)
    kw = {"batch_size": 32, "seed": 0, "data": blobs(), **change}
    with pytest.raises(sd.InputError, match=needle):
        sd.fit(loss, params, kw.pop("data"), epochs=2, checkpoint=ckpt, progress=False, **kw)
    assert_unchanged(params, before)


def test_resuming_says_what_it_does_and_refuses_fewer_epochs_than_the_checkpoint_holds(tmp_path, capsys) -> None:
    ckpt = tmp_path / "c.npz"
    loss = classifier()
    sd.fit(loss, sd.init_params(loss), blobs(), epochs=2, checkpoint=ckpt, progress=False)
    params = sd.init_params(loss, seed=3)
    before = snapshot(params)
    with pytest.raises(sd.InputError, match=r"already holds 2 epochs, more than epochs=1: pass epochs=2 or more"):
        sd.fit(loss, params, blobs(), epochs=1, checkpoint=ckpt, progress=False)
    assert_unchanged(params, before)
    capsys.readouterr()
    hist = sd.fit(loss, params, blobs(), epochs=2, checkpoint=ckpt)
    assert hist.epoch == [1, 2]
    assert capsys.readouterr().out == f"checkpoint {str(ckpt)!r} already holds all 2 epochs; nothing to train\n"
    sd.fit(loss, params, blobs(), epochs=3, checkpoint=ckpt)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"checkpoint {str(ckpt)!r}: resuming after epoch 2 of 3" and out[1].startswith("epoch 3/3: loss")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda meta: meta.update(t=-5), "its meta entry 't' is missing or invalid"),
        (lambda meta: meta.update(t=True), "its meta entry 't' is missing or invalid"),
        (lambda meta: meta.update(t=3), r"its meta entry 't' \(3 steps\) does not match its 1 epochs \(2 steps\)"),
        (lambda meta: meta.update(epoch=-1), "its meta entry 'epoch' is missing or invalid"),
        (lambda meta: meta.pop("run"), "its meta entry 'run' is missing or invalid"),
        (lambda meta: meta["run"].pop("seed"), "its meta entry 'run' is missing or invalid"),
        (lambda meta: meta.pop("optimizer"), "its meta entry 'optimizer' is missing or invalid"),
        (lambda meta: meta.update(format=99), "has format 99, this symdiff reads format 2"),
        (lambda meta: meta.pop("format"), "its meta entry 'format' is missing or invalid"),
        (lambda meta: meta.update(format=2.0), "its meta entry 'format' is missing or invalid"),
        (lambda meta: meta.update(epochs_done=[5, 9]), r"'epochs_done' is not the epochs 1\.\.1 its 'epoch' says"),
        (lambda meta: meta.update(epochs_done=[1.0]), r"'epochs_done' is not the epochs 1\.\.1"),
        (lambda meta: meta["history"].update(loss=[0.5] * 5), r"'history' is invalid \(every entry must hold 1"),
        (lambda meta: meta["history"].update(loss=[True]), r"'history' is invalid"),
        (lambda meta: meta["history"].update(bogus=[1.0]), r"holds the history \['bogus', 'loss'\], this run records"),
    ],
)
def test_a_checkpoint_with_invalid_or_missing_meta_is_refused_as_damaged_before_anything_is_copied(
    tmp_path, change, needle
) -> None:
    ckpt, loss = one_epoch_checkpoint(tmp_path)
    rewrite_meta(ckpt, change)
    params = sd.init_params(loss, seed=2)
    before = snapshot(params)
    with pytest.raises(sd.InputError, match=needle):
        sd.fit(loss, params, blobs(), optimizer=optim.Adam(lr=0.1), epochs=2, checkpoint=ckpt, progress=False)
    assert_unchanged(params, before)


@pytest.mark.parametrize("key", ["param:out_W", "state:v_h1_b"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_checkpoint_holding_non_finite_params_or_optimizer_state_is_refused_before_anything_is_copied(
    tmp_path, key, bad
) -> None:
    ckpt, loss = one_epoch_checkpoint(tmp_path)
    with np.load(ckpt) as f:
        arrays = {k: f[k] for k in f.files}
    arrays[key].flat[0] = bad
    np.savez(ckpt, **arrays)
    params = sd.init_params(loss, seed=2)
    before = snapshot(params)
    with pytest.raises(sd.InputError, match=rf"is damaged: {key} holds nan or inf values; use another path"):
        sd.fit(loss, params, blobs(), optimizer=optim.Adam(lr=0.1), epochs=2, checkpoint=ckpt, progress=False)
    assert_unchanged(params, before)


def test_resuming_with_other_metrics_or_validation_data_than_the_checkpoint_records_is_refused(tmp_path) -> None:
    ckpt = tmp_path / "c.npz"
    loss = classifier()
    sd.fit(loss, sd.init_params(loss), blobs(), epochs=1, metrics=["accuracy"], checkpoint=ckpt, progress=False)
    params = sd.init_params(loss, seed=3)
    before = snapshot(params)
    with pytest.raises(sd.InputError, match=r"holds the history \['accuracy', 'loss'\], this run records \['loss', "):
        sd.fit(loss, params, blobs(), epochs=2, validation_data=blobs(20, 1), checkpoint=ckpt, progress=False)
    assert_unchanged(params, before)
    hist = sd.fit(loss, params, blobs(), epochs=2, metrics=["accuracy"], checkpoint=ckpt, progress=False)
    assert hist.epoch == [1, 2] and [len(v) for v in hist.history.values()] == [2, 2]


def test_a_checkpoint_without_a_format_marker_may_lack_its_run_entry(tmp_path) -> None:
    ckpt = tmp_path / "c.npz"
    loss = classifier()
    sd.fit(loss, sd.init_params(loss, seed=1), blobs(), epochs=1, checkpoint=ckpt, progress=False)
    rewrite_meta(ckpt, lambda meta: [meta.pop(k) for k in ("format", "run", "stopped")])
    hist = sd.fit(loss, sd.init_params(loss, seed=2), blobs(), epochs=2, checkpoint=ckpt, progress=False)
    assert hist.epoch == [1, 2]


@pytest.mark.skipif(not hasattr(os, "symlink") or os.name != "posix", reason="needs POSIX symlinks")
def test_saving_params_and_checkpoints_to_a_symlink_writes_its_target_and_keeps_the_link(tmp_path) -> None:
    real = tmp_path / "store"
    real.mkdir()
    target, link = real / "p.npz", tmp_path / "p.npz"
    sd.save_params({"W": np.zeros(3)}, target)
    os.symlink(target, link)
    sd.save_params({"W": np.ones(3)}, link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    np.testing.assert_array_equal(sd.load_params(target)["W"], np.ones(3))
    assert sorted(p.name for p in real.iterdir()) == ["p.npz"]  # no temp file left, no second copy
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npz", "store"]
    ckpt, ckpt_link = real / "c.npz", tmp_path / "c.npz"
    os.symlink(ckpt, ckpt_link)  # dangling until the first save
    loss = classifier()
    sd.fit(loss, sd.init_params(loss), blobs(), epochs=1, checkpoint=ckpt_link, progress=False)
    assert ckpt_link.is_symlink() and ckpt.is_file()
    hist = sd.fit(loss, sd.init_params(loss), blobs(), epochs=2, checkpoint=ckpt_link, progress=False)
    assert hist.epoch == [1, 2] and ckpt_link.is_symlink()
