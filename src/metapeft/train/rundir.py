"""The run directory's integrity: one writer at a time, every check before the first write.

Why this module exists: a command that fails or is refused must leave a run directory exactly as
it found it. So ``train`` (1) takes an advisory lock holding its pid (:class:`RunLock`), (2) runs
:func:`preflight` — is there a run, may it be resumed with this config, which checkpoint is intact
and readable — while writing nothing, and only then (3) calls :func:`begin_writing`, the first
write: orphaned temp files removed, ``config.yaml`` replaced. The data and the model are built
between (2) and (3), so a bad data root or a checkpoint that does not fit is refused untouched.

``--resume`` never deletes a checkpoint it did not supersede: with ``latest`` missing or broken it
resumes from the newest intact ``epoch_N`` and says so; with none intact it stops.
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..errors import MetapeftError, RunDirError
from . import checkpoint as ckpt

LOCK_NAME = "run.lock"
# Keys that may differ between a run and its --resume: none changes what is already written.
# (train.epochs moves the end of the cosine schedule: the resumed steps follow the new length.)
RESUMABLE_KEYS = ("train.epochs", "train.progress", "train.tensorboard", "train.threads", "train.device",
                  "train.eval_batch_size", "train.keep_checkpoints")
RUN_FILES = ("config.yaml", "metrics.json", "history.csv")
# What the atomic writers name their temp files (``.<name>.<random>``) and checkpoint temp folders.
TEMP_PREFIXES = tuple(f".{n}." for n in ("config.yaml", "metrics.json", "gamma.json", "latest", "peft.safetensors",
                                         "merged.safetensors", "peft_config.json")) + (".epoch_",)


class RunLock:
    """Advisory ``flock`` on ``RUN/run.lock`` (the file holds the owner's pid).

    The kernel drops a flock when its process dies, so a lock file left by a killed run is not
    held by anyone: it is taken over (and reported). The file is removed on release; an inode check
    after locking makes a racing second process retry instead of locking a removed file.
    """

    def __init__(self, out: Path, *, enabled: bool = True) -> None:
        self.out, self.enabled = Path(out), enabled
        self.path = self.out / LOCK_NAME
        self.fd: int | None = None
        self.created_dir = False
        self.taken_over: str | None = None

    def __enter__(self) -> "RunLock":
        if not self.enabled:
            return self
        import fcntl

        self.created_dir = not self.out.exists()
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"cannot create run directory {self.out}: {e.strerror}") from None
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                owner = os.read(fd, 64).decode(errors="replace").strip() or "?"
                os.close(fd)
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise RunDirError(f"{self.out} is in use by another metapeft process (pid {owner}, lock "
                                      f"{self.path}); wait for it to finish or choose another --out") from None
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the previous owner removed the file between our open and our lock
        previous = os.read(fd, 64).decode(errors="replace").strip()
        if previous and previous != str(os.getpid()):
            self.taken_over = previous
        os.lseek(fd, 0, os.SEEK_SET)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)
        os.close(self.fd)
        self.fd = None
        if self.created_dir:  # a refused fresh run leaves no empty directory behind
            try:
                self.out.rmdir()
            except OSError:
                pass


@dataclass
class Preflight:
    """What :func:`preflight` found: where training starts and what to tell the user."""

    checkpoint: Path | None = None          # resume from here (None: a fresh start)
    saved: dict[str, Any] | None = None     # that checkpoint, already read and checked
    notes: list[str] = field(default_factory=list)


def has_run(out: Path) -> bool:
    root = out / "checkpoints"
    return any((out / f).exists() for f in RUN_FILES) or (root.is_dir() and any(
        p.name == "latest" or p.name.startswith("epoch_") for p in root.iterdir()))


def preflight(out: Path, cfg: RunConfig, resume: bool) -> Preflight:
    """Every check on the run directory, with no write. Raises RunDirError (dir untouched)."""
    out = Path(out)
    if not has_run(out):
        return Preflight()
    if not resume:
        raise RunDirError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
    check_resumable(out, cfg)
    pre = Preflight()
    found = newest_intact_checkpoint(out / "checkpoints", pre.notes)
    if found is None:
        if (out / "metrics.json").exists() or any((out / "checkpoints").glob("epoch_*")):
            raise RunDirError(f"--resume: {out} holds a run but no intact checkpoint "
                              f"({'; '.join(pre.notes) or 'checkpoints/ is empty'}); nothing was changed. "
                              "Evaluate it with `metapeft eval`, or train into another --out")
        pre.notes.append(f"{out}: no checkpoint yet (killed during the first epoch): starting from epoch 1")
        return pre
    pre.checkpoint, pre.saved = found
    done = pre.saved["state"].get("epoch", 0)
    if cfg.train.epochs < done:
        raise RunDirError(f"--resume: train.epochs = {cfg.train.epochs} but {pre.checkpoint} is already at "
                          f"epoch {done}; give train.epochs >= {done}")
    return pre


def check_resumable(out: Path, cfg: RunConfig) -> None:
    """The stored config must equal ``cfg`` except for :data:`RESUMABLE_KEYS`; name every difference."""
    path = out / "config.yaml"
    if not path.is_file():
        raise RunDirError(f"--resume: {path} is missing, so the run's configuration is unknown; "
                          "restore it (or start a new --out)")
    try:
        old = RunConfig.load(path)
    except MetapeftError as e:
        raise RunDirError(f"--resume: {path} cannot be read ({e}); restore it or start a new --out") from None
    before, after = _flat(old.to_dict()), _flat(cfg.to_dict())
    changed = [k for k in sorted(set(before) | set(after))
               if before.get(k) != after.get(k) and k not in RESUMABLE_KEYS]
    if changed:
        diffs = ", ".join(f"{k} ({before.get(k)!r} -> {after.get(k)!r})" for k in changed)
        raise RunDirError(f"--resume would change {diffs}; only {', '.join(RESUMABLE_KEYS)} may change when "
                          f"resuming. Use the run's config ({path}) or train into another --out")


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and not prefix:
            out.update(_flat(v, f"{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def newest_intact_checkpoint(root: Path, notes: list[str] | None = None) -> tuple[Path, dict[str, Any]] | None:
    """(path, loaded checkpoint) of the newest ``epoch_N`` that reads back completely, or None.

    ``latest`` is only a hint: every candidate is read (safetensors, weights-only torch files, JSON),
    so a truncated or hostile file is skipped with a note instead of failing mid-run.
    """
    notes = [] if notes is None else notes
    if not root.is_dir():
        return None
    named = _latest_name(root, notes)
    for path in sorted((p for p in root.glob("epoch_*") if p.is_dir()), reverse=True):
        try:
            saved = ckpt.load_checkpoint(path)
        except MetapeftError as e:
            notes.append(str(e))
            continue
        if saved["state"].get("epoch") != int(path.name.split("_")[1]):
            notes.append(f"{path}/state.json records epoch {saved['state'].get('epoch')}: skipped")
            continue
        if named != path.name:
            notes.append(f"resuming from the newest intact checkpoint {path.name}")
        return path, saved
    return None


def _latest_name(root: Path, notes: list[str]) -> str | None:
    marker = root / "latest"
    if not marker.is_file():
        notes.append(f"{marker} is missing")
        return None
    try:
        name = marker.read_text().strip()
    except (OSError, UnicodeDecodeError):
        notes.append(f"{marker} cannot be read")
        return None
    if not (root / name / "state.json").is_file():
        notes.append(f"{marker} names {name!r}, which is not a checkpoint")
    return name


def begin_writing(out: Path, cfg: RunConfig, pre: Preflight) -> None:
    """The first write of a run, after every check: clean up, then record the config."""
    remove_orphans(out)
    if pre.checkpoint is None:  # a fresh start supersedes rows of an epoch that never reached a checkpoint
        (out / "history.csv").unlink(missing_ok=True)
    ckpt.atomic_write_text(out / "config.yaml", cfg.to_yaml())


def remove_orphans(out: Path) -> list[Path]:
    """Temp files and folders left by a killed write (``.epoch_N.*``, ``.<name>.*``): never complete,
    since a write is renamed into place only once it is whole."""
    gone = []
    for folder in (out, out / "checkpoints", out / "export"):
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            if p.name.startswith(TEMP_PREFIXES):
                shutil.rmtree(p) if p.is_dir() else p.unlink()
                gone.append(p)
    return gone


def restore(pre: Preflight, model: Any, optimizer: Any, scheduler: Any, meta: Any) -> dict[str, Any]:
    """Load the checkpoint :func:`preflight` read into the live objects; returns the training state.

    Runs before :func:`begin_writing`, so a checkpoint that does not fit is refused with the dir untouched.
    """

    saved, path = pre.saved, pre.checkpoint
    assert saved is not None and path is not None
    if meta and "meta" in saved:  # first: the optimizer's param groups differ between the modes too
        _check_meta_mode(path, meta, saved["meta"])
    try:
        ckpt.load_trainable_state(model, saved["trainable"])
        optimizer.load_state_dict(saved["optimizer"])
        state = saved["state"]
        scheduler.load_state_dict(state["scheduler"])
        if meta:
            if "meta" not in saved:
                raise ValueError("meta.pt is missing but meta-learning is on")
            meta.load_state_dict(saved["meta"])
    except (MetapeftError, KeyError, ValueError, TypeError, RuntimeError) as e:
        raise ckpt.CheckpointError(f"{path} does not fit this run ({type(e).__name__}: {e}): {ckpt.REPAIR}") from None
    return state


def _check_meta_mode(path: Path, meta: Any, state: dict[str, Any]) -> None:
    """Name the meta mode when the checkpoint's meta state is of another one (e.g. a run started before a
    default changed), instead of a bare shape error. ``meta``: the run's :class:`MetaStates`."""
    from .meta_states import FLAGS, saved_mode

    saved = saved_mode(state)
    if saved != meta.mode:
        raise ckpt.CheckpointError(f"{path} was written by a {FLAGS[saved]} run but this run is "
                                   f"{FLAGS[meta.mode]}; resume with --set {FLAGS[saved]}")


def all_skipped_message(epoch: int, out: Path) -> str:
    """Why training stops when no step of an epoch was taken (the run learned nothing)."""
    kept = f"the checkpoint of epoch {epoch} in {out} is kept" if epoch else "no checkpoint was written"
    return (f"epoch {epoch + 1}: every step was skipped (non-finite loss, gradient or update), so nothing was "
            f"learned; {kept}. Lower train.lr or meta.lr, set train.clip_grad, or check the data")
