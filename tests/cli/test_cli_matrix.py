"""The bad-input and fault matrix of issue 14, as one table: nothing silent, nothing lost.

Every row runs ``metapeft.cli.main`` in-process (fast: bad config and data are refused before any
model is built) and asserts the exit code, exactly one ``error:`` line naming the culprit, no
traceback, and that every file under the test's directory (the run dir included) is byte-identical
before and after. Rows with exit code 0 are the recoveries (fallback checkpoints, stale locks,
orphans) and check their own outcome instead. One small base run (tiny ViT, 2 epochs, MetaPEFT on,
two checkpoints kept) is trained once per session and copied for every row that needs a run dir.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metapeft.cli import main


def _tiny_run() -> list[str]:
    """tests/conftest.py's TINY_RUN (loaded by path: `import conftest` may name another conftest)."""
    spec = importlib.util.spec_from_file_location("_root_conftest", Path(__file__).resolve().parents[1] / "conftest.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return list(mod.TINY_RUN)


TINY_RUN = _tiny_run()

BASE = [*TINY_RUN, "train.threads=1", "meta.enabled=true", "meta.interval=2", "train.keep_checkpoints=2"]
CK = "checkpoints"


@dataclass
class Case:
    id: str
    argv: list[str]                       # "{run}" / "{tmp}" are filled in
    needle: str = ""                      # must appear in the one error: line (exit 2)
    setup: Callable[[Path, Path], None] | None = None   # (run dir, tmp dir), before the snapshot
    base: bool = False                    # start from a copy of the base run
    code: int = 2
    check: Callable[[Path, Path, str], None] | None = None   # exit-0 rows: (run, tmp, stderr)


def train(*sets: str, resume: bool = False) -> list[str]:
    return ["train", "-q", "--out", "{run}", *(["--resume"] if resume else []), "--set", *BASE, *sets]


def cfg(*sets: str, needle: str) -> Case:
    return Case(f"config:{' '.join(sets)[:40]}", train(*sets), needle)


# ---------------------------------------------------------------- set-ups (mutations of a copied run)
def truncate(rel: str) -> Callable[[Path, Path], None]:
    def do(run: Path, tmp: Path) -> None:
        p = run / rel
        p.write_bytes(p.read_bytes()[: max(1, p.stat().st_size // 2)])
    return do


def replace(rel: str, data: bytes | str) -> Callable[[Path, Path], None]:
    def do(run: Path, tmp: Path) -> None:
        (run / rel).write_bytes(data.encode() if isinstance(data, str) else data)
    return do


def delete(*rels: str) -> Callable[[Path, Path], None]:
    def do(run: Path, tmp: Path) -> None:
        for rel in rels:
            p = run / rel
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    return do


def newest_only(mutate: Callable[[str], Callable[[Path, Path], None]], name: str) -> Callable[[Path, Path], None]:
    """Keep only the newest checkpoint, then damage one of its files (no older one to fall back to)."""
    return chain(delete(f"{CK}/epoch_0001"), mutate(f"{CK}/epoch_0002/{name}"))


def chain(*steps: Callable[[Path, Path], None]) -> Callable[[Path, Path], None]:
    def do(run: Path, tmp: Path) -> None:
        for s in steps:
            s(run, tmp)
    return do


class _Hostile:
    """Unpickling this would run a shell command: weights_only loading must refuse it."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def hostile(rel: str) -> Callable[[Path, Path], None]:
    def do(run: Path, tmp: Path) -> None:
        (run / rel).write_bytes(pickle.dumps({"state": _Hostile(str(tmp / "PWNED"))}))
    return do


def folder(spec: dict[str, int], size=(32, 32), mode="RGB", bad: str | None = None, vary=False):
    """An ImageFolder dataset under tmp/data: {class: n images}; ``bad`` = one corrupt file name;
    ``vary``: the first image of each class is 4 px wider."""
    def do(run: Path, tmp: Path) -> None:
        rng = np.random.default_rng(0)
        for c, n in spec.items():
            d = tmp / "data" / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                s = (size[0] + 4, size[1]) if vary and not i else size
                Image.fromarray(rng.integers(0, 255, (s[1], s[0], 3), dtype=np.uint8)).convert(mode).save(d / f"{i}.png")
        if bad:
            (tmp / "data" / next(iter(spec)) / bad).write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return do


def data(*sets: str) -> list[str]:
    return train("data.name=imagefolder", "data.root={tmp}/data", "data.imbalance_ratio=null",
                 "data.max_per_class=null", *sets)


def hold_lock(run: Path, tmp: Path) -> None:
    """A live process holding the run's lock (what a concurrent train does)."""
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, str(os.getpid()).encode()); print('locked', flush=True); "
            "time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(run / "run.lock")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    HOLDERS.append(holder)


HOLDERS: list[subprocess.Popen] = []


# ---------------------------------------------------------------- checks of the recovery rows
def epochs(run: Path) -> list[int]:
    with (run / "history.csv").open() as f:
        return [int(r["epoch"]) for r in csv.DictReader(f)]


def resumed_to_3(note: str) -> Callable[[Path, Path, str], None]:
    def check(run: Path, tmp: Path, err: str) -> None:
        assert note in err
        assert epochs(run) == [1, 2, 3] and json.loads((run / "metrics.json").read_text())["run"]["epochs"] == 3
        assert (run / CK / "latest").read_text().strip() == "epoch_0003" and (run / CK / "epoch_0003").is_dir()
    return check


def orphans_removed(run: Path, tmp: Path, err: str) -> None:
    resumed_to_3("")(run, tmp, err)
    assert not list(run.rglob(".epoch_*")) and not list(run.rglob(".metrics.json.*"))


def lock_taken_over(run: Path, tmp: Path, err: str) -> None:
    resumed_to_3("")(run, tmp, err)
    assert not (run / "run.lock").exists()


def eval_fell_back(run: Path, tmp: Path, err: str) -> None:
    assert "warning:" in err and "peft.safetensors" in err and "epoch_0002" in err


STALE = "999999999\n"  # no such pid

CASES: list[Case] = [
    # ---- config: refused before anything is built or written
    cfg("peft.positions=", needle="peft.positions"),
    cfg("peft.positions=,", needle="peft.positions"),
    cfg("peft.positions=[]", needle="peft.positions"),
    cfg("peft.positions=q,x", needle="unknown position"),
    cfg("train.lr=.nan", needle="train.lr"),
    cfg("train.lr=-1", needle="train.lr"),
    cfg("train.lr=fast", needle="train.lr"),
    cfg("train.lr=1e400", needle="train.lr"),
    cfg("meta.lr=.nan", needle="meta.lr"),
    cfg("meta.lr=.inf", needle="meta.lr"),
    cfg("model.head_scale=.inf", needle="model.head_scale"),
    cfg("train.la_tau=.nan", needle="train.la_tau"),
    cfg("train.la_tau=-1", needle="train.la_tau"),
    cfg("model.img_size=57", needle="model.img_size"),
    cfg("model.img_size=4", needle="model.img_size"),
    cfg("peft.blocks=last:abc", needle="peft.blocks"),
    cfg("peft.blocks={a: 1}", needle="peft.blocks"),
    cfg("peft.blocks=[1.7]", needle="peft.blocks"),
    cfg("peft.blocks=[]", needle="peft.blocks"),
    cfg("peft.blocks=last:0", needle="peft.blocks"),
    cfg("peft.blocks=last:99", needle="peft.blocks"),
    cfg("peft.blocks=[7]", needle="peft.blocks"),
    cfg("train.warmup_steps=-3", needle="train.warmup_steps"),
    cfg("train.clip_grad=-1", needle="train.clip_grad"),
    cfg("train.threads=-2", needle="train.threads"),
    cfg("train.eval_every=-1", needle="train.eval_every"),
    cfg("train.momentum=-0.5", needle="train.momentum"),
    cfg("train.weight_decay=-1", needle="train.weight_decay"),
    cfg("meta.momentum=1.5", needle="meta.momentum"),
    cfg("meta.weight_decay=-0.1", needle="meta.weight_decay"),
    cfg("meta.prune_threshold=-0.1", needle="meta.prune_threshold"),
    cfg("meta.interval=0", needle="meta.interval"),
    cfg("meta.hypergrad=exact", needle="meta.hypergrad"),
    cfg("peft.alpha=0", needle="peft.alpha"),
    cfg("peft.alpha=-2", needle="peft.alpha"),
    cfg("peft.rank=0", needle="peft.rank"),
    cfg("peft.dropout=1.0", needle="peft.dropout"),
    cfg("peft.method=prompt", needle="unknown method 'prompt'"),
    cfg("peft.gamma_init=-1", "peft.gamma_constraint=clamp", needle="peft.gamma_constraint"),
    cfg("peft.gamma_init=0", "peft.gamma_constraint=softplus", needle="peft.gamma_init"),
    cfg("peft.gamma_max=0.5", needle="peft.gamma_max"),
    cfg("peft.gamma_max=-1", needle="peft.gamma_max"),
    cfg("meta.enabled=true", "peft.method=bitfit", needle="needs a method with γ"),
    cfg("data.max_per_class=0", needle="data.max_per_class"),
    cfg("data.image_size=0", needle="data.image_size"),
    cfg("data.group_thresholds=[1.5, 0.5]", needle="data.group_thresholds"),
    cfg("data.group_thresholds=[5, 50]", needle="data.group_thresholds"),
    cfg("data.crop_scale=[0.9, 0.1]", needle="data.crop_scale"),
    cfg("data.crop_scale=[0.5]", needle="data.crop_scale"),
    cfg("data.test_fraction=1.5", needle="data.test_fraction"),
    cfg("data.imbalance_ratio=0.5", needle="data.imbalance_ratio"),
    cfg("train.epochs=-1", needle="train.epochs"),
    cfg("train.batch_size=0", needle="train.batch_size"),
    cfg("train.grad_accum=3", needle="train.batch_size"),
    cfg("train.keep_checkpoints=0", needle="train.keep_checkpoints"),
    cfg("train.seed=-1", needle="train.seed"),
    cfg("train.device=gpu", needle="train.device"),
    cfg("train.optimizer=rmsprop", needle="train.optimizer"),
    cfg("train.epochz=3", needle="unknown key(s) in train: epochz"),
    cfg("train=5", needle="<section>.<field>"),
    cfg("data.options=" + "[" * 3000 + "]" * 3000, needle="data.options"),
    cfg("model.options=" + "{a: " * 40 + "1" + "}" * 40, needle="model.options"),
    cfg("model.name=no_such_vit", needle="no_such_vit"),
    cfg("model.options={depth: 2, foo: 1}", needle="model.options"),
    cfg("model.options={depth: 2, patch_size: 8, embed_dim: 50, num_heads: 3}", needle="model.options"),
    Case("config:pretrained-corrupt", train("model.pretrained={tmp}/w.safetensors"), "w.safetensors",
         setup=lambda run, tmp: (tmp / "w.safetensors").write_bytes(b"\x10\x00\x00\x00garbage")),
    cfg("model.pretrained=/no/such/weights.safetensors", needle="weights.safetensors"),
    Case("config:file-missing", ["train", "-q", "--out", "{run}", "--config", "{tmp}/nope.yaml"], "nope.yaml"),
    Case("config:file-recursive-alias", ["train", "-q", "--out", "{run}", "--config", "{tmp}/a.yaml"], "a.yaml",
         setup=lambda run, tmp: (tmp / "a.yaml").write_text("data:\n  options: &a\n    x: *a\n")),
    Case("config:file-not-yaml", ["train", "-q", "--out", "{run}", "--config", "{tmp}/b.yaml"], "b.yaml",
         setup=lambda run, tmp: (tmp / "b.yaml").write_text("train: [epochs: 3\n")),
    Case("config:file-binary", ["train", "-q", "--out", "{run}", "--config", "{tmp}/c.yaml"], "c.yaml",
         setup=lambda run, tmp: (tmp / "c.yaml").write_bytes(b"\xff\xfe\x00garbage")),
    # ---- data: refused before training
    cfg("data.root=/nonexistent/data/root", needle="/nonexistent/data/root"),
    cfg("data.name=nosuchset", needle="nosuchset"),
    Case("data:one-class", data(), "at least 2", setup=folder({"only": 6})),
    Case("data:empty-class", data(), "no images", setup=chain(folder({"a": 4, "b": 4}),
                                                             lambda run, tmp: (tmp / "data" / "c").mkdir())),
    Case("data:corrupt-image", data(), "broken.png", setup=folder({"a": 4, "b": 4}, bad="broken.png")),
    Case("data:sizes-differ", data(), "image_size", setup=folder({"a": 4, "b": 4}, vary=True)),
    Case("data:no-class-dirs", data(), "no class subdirectories",
         setup=lambda run, tmp: (tmp / "data").mkdir()),
    Case("data:too-few-for-a-step", data("data.image_size=32", "train.batch_size=64"), "no batch of 64",
         setup=folder({"a": 4, "b": 4})),
    # ---- run directory and checkpoints: refused with the directory byte-identical
    Case("run:exists-no-resume", train(), "--resume", base=True),
    Case("run:no-latest-no-metrics-no-resume", train(), "--resume", base=True,
         setup=delete(f"{CK}/latest", "metrics.json")),
    Case("run:only-history-no-resume", train(), "--resume", base=True,
         setup=delete(CK, "metrics.json", "config.yaml")),
    Case("resume:rank-changed", train("peft.rank=8", "train.epochs=3", resume=True), "peft.rank (4 -> 8)", base=True),
    Case("resume:lr-changed", train("train.lr=0.1", resume=True), "train.lr (0.01 -> 0.1)", base=True),
    Case("resume:dropout-changed", train("peft.dropout=0.1", resume=True), "peft.dropout", base=True),
    Case("resume:data-root-changed", train("data.root=/nonexistent", resume=True), "data.root", base=True),
    Case("resume:fewer-epochs", train("train.epochs=1", resume=True), "train.epochs = 1", base=True),
    Case("resume:config-missing", train(resume=True), "config.yaml is missing", base=True,
         setup=delete("config.yaml")),
    Case("resume:config-corrupt", train(resume=True), "config.yaml", base=True,
         setup=replace("config.yaml", "train: {epochs: [")),
    Case("resume:trainable-truncated", train(resume=True), "trainable.safetensors", base=True,
         setup=newest_only(truncate, "trainable.safetensors")),
    Case("resume:optimizer-hostile", train(resume=True), "optimizer.pt", base=True,
         setup=newest_only(hostile, "optimizer.pt")),
    Case("resume:optimizer-truncated", train(resume=True), "optimizer.pt", base=True,
         setup=newest_only(truncate, "optimizer.pt")),
    Case("resume:meta-hostile", train(resume=True), "meta.pt", base=True,
         setup=newest_only(hostile, "meta.pt")),
    Case("resume:meta-missing", train(resume=True), "meta.pt is missing", base=True,
         setup=chain(delete(f"{CK}/epoch_0001", f"{CK}/epoch_0002/meta.pt"))),
    Case("resume:state-truncated", train(resume=True), "state.json", base=True,
         setup=newest_only(truncate, "state.json")),
    Case("resume:all-checkpoints-broken", train(resume=True), "no intact checkpoint", base=True,
         setup=chain(truncate(f"{CK}/epoch_0001/state.json"), truncate(f"{CK}/epoch_0002/trainable.safetensors"))),
    Case("resume:checkpoints-deleted", train(resume=True), "no intact checkpoint", base=True, setup=delete(CK)),
    Case("resume:weights-do-not-fit", train(resume=True), "does not fit", base=True,
         setup=chain(delete(f"{CK}/epoch_0001"), lambda run, tmp: _swap_tensor(run / CK / "epoch_0002"))),
    Case("concurrency:lock-held", train("train.epochs=3", resume=True), "in use by another", base=True,
         setup=hold_lock),
    Case("eval:export-and-checkpoints-broken", ["eval", "--checkpoint", "{run}"], "peft.safetensors", base=True,
         setup=chain(truncate("export/peft.safetensors"), delete(CK))),
    Case("eval:config-corrupt", ["eval", "--checkpoint", "{run}"], "config.yaml", base=True,
         setup=replace("config.yaml", "- not\n- a mapping\n")),
    Case("eval:no-run", ["eval", "--checkpoint", "{tmp}"], "no run found"),
    # ---- recoveries: exit 0, nothing that was not superseded is lost
    Case("recover:latest-missing", train("train.epochs=3", resume=True), base=True, code=0,
         setup=delete(f"{CK}/latest"), check=resumed_to_3("latest is missing")),
    Case("recover:latest-dangling", train("train.epochs=3", resume=True), base=True, code=0,
         setup=replace(f"{CK}/latest", "epoch_0009\n"), check=resumed_to_3("epoch_0009")),
    Case("recover:newest-truncated", train("train.epochs=3", resume=True), base=True, code=0,
         setup=truncate(f"{CK}/epoch_0002/trainable.safetensors"), check=resumed_to_3("epoch_0001")),
    Case("recover:orphans", train("train.epochs=3", resume=True), base=True, code=0, check=orphans_removed,
         setup=lambda run, tmp: ((run / CK / ".epoch_0003.x1y2").mkdir(), (run / ".metrics.json.ab12").write_text("{"))),
    Case("recover:stale-lock", train("train.epochs=3", resume=True), base=True, code=0, check=lock_taken_over,
         setup=replace("run.lock", STALE)),
    Case("recover:eval-corrupt-export", ["eval", "--checkpoint", "{run}"], base=True, code=0, check=eval_fell_back,
         setup=truncate("export/peft.safetensors")),
]


def _swap_tensor(ck: Path) -> None:
    from safetensors.torch import load_file, save_file
    t = load_file(str(ck / "trainable.safetensors"))
    k = next(iter(t))
    t[k] = t[k].new_zeros((*t[k].shape, 2))
    save_file(t, str(ck / "trainable.safetensors"))


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def base_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("base") / "run"
    assert main(["train", "-q", "--out", str(out), "--set", *BASE]) == 0
    assert sorted(p.name for p in (out / CK).iterdir()) == ["epoch_0001", "epoch_0002", "latest"]
    return out


def test_matrix_has_every_kind():
    kinds = {c.id.split(":")[0] for c in CASES}
    assert len(CASES) >= 60 and {"config", "data", "run", "resume", "concurrency", "eval", "recover"} <= kinds
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_matrix(case: Case, request, tmp_path, capsys):
    run = tmp_path / "run"
    if case.base:
        shutil.copytree(request.getfixturevalue("base_run"), run)
    try:
        if case.setup:
            case.setup(run, tmp_path)
        before = snapshot(tmp_path)
        capsys.readouterr()
        code = main([a.replace("{run}", str(run)).replace("{tmp}", str(tmp_path)) for a in case.argv])
        err = capsys.readouterr().err
    finally:
        for h in HOLDERS:
            h.kill()
            h.wait()
        HOLDERS.clear()
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err and not (tmp_path / "PWNED").exists()
    assert code == case.code, err
    if case.code == 0:
        assert not errors, err
        case.check(run, tmp_path, err)
        return
    assert len(errors) == 1 and case.needle in errors[0], err
    assert snapshot(tmp_path) == before, "a refused command changed files"
