"""Optuna TPE baseline: search LoRA positions, depth range and scale with ordinary (γ-free) runs.

Search space (the hyperparameters MetaPEFT learns instead):
  * positions — one boolean per LoRA position (q, k, v, out, mlp1, mlp2); none selected = pruned trial;
  * blocks — the contiguous range ``last:k`` (blocks L-k … L-1), k ∈ 1..L;
  * scale — log-uniform in [2^-4, 2^4], applied through ``peft.alpha``.

The objective must not be test accuracy: it is the balanced accuracy on a stratified hold-out of the
training set (trainer option ``train.val_holdout``, set to 0.2 here unless ``--set`` says otherwise;
read from ``metrics.json`` ``val.balanced``, or a flat ``val_balanced``). Without it the trial falls back
to *test* balanced accuracy and every row says so. The study lives in ``DIR/optuna.db`` (sqlite), so
re-running resumes it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..config import ConfigError
from ..atomic import atomic_write_text
from .cellconfig import SCALE_KEY, build_cell_config, resolve_base, split_derived
from .grid import Cell
from .manifest import check_compatible, read_manifest, write_manifest
from .presets import LORA_POSITIONS
from .results import val_metric
from .cells import train_in_process, with_shared_prefix_cache

STUDY = "metapeft_hpo"
VAL_KEY = "val_balanced"
HOLDOUT_SHARE = 0.2  # train.val_holdout of every trial: the objective's model-selection split
SCALE_RANGE = (2.0 ** -4, 2.0 ** 4)
TEST_FALLBACK = "balanced (TEST set: no validation split, selection biased)"
TRIAL_COLUMNS = ("number", "state", "value", "objective", "positions", "blocks", "scale", "alpha", "wall_time_s",
                 "epochs", "steps", "test_overall", "test_balanced", "test_few", "run_dir", "note")


def fixed_overrides() -> list[str]:
    """Applied before the user's ``--set``: plain LoRA (γ off) and the model-selection hold-out."""
    return ["peft.method=lora", "meta.enabled=false", f"train.val_holdout={HOLDOUT_SHARE}"]


@dataclass
class HpoSpec:
    base: dict[str, Any]
    n_trials: int
    depth: int = 12
    seed: int = 0
    config_file: str | None = None
    overrides: list[str] = field(default_factory=list)
    startup_trials: int | None = None   # TPE's random start-up trials; None: Optuna's default (10)

    @classmethod
    def create(cls, config: str | Path | None, overrides: list[str], n_trials: int, depth: int = 12,
               seed: int = 0, startup_trials: int | None = None) -> "HpoSpec":
        if n_trials < 1 or depth < 1:
            raise ConfigError("--optuna needs N >= 1 trials and --depth >= 1")
        if startup_trials is not None and startup_trials < 1:
            raise ConfigError(f"--startup-trials must be >= 1, got {startup_trials}")
        if split_derived(overrides)[1]:
            raise ConfigError(f"--optuna searches {SCALE_KEY} itself; drop --set {SCALE_KEY}=...")
        base = resolve_base(config, overrides)
        if base["peft"]["method"] != "lora":
            raise ConfigError(f"--optuna searches LoRA positions; peft.method is {base['peft']['method']!r}")
        return cls(base, n_trials, depth, seed, str(config) if config else None, list(overrides), startup_trials)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "optuna", "n_trials": self.n_trials, "depth": self.depth, "sampler_seed": self.seed,
                "startup_trials": self.startup_trials, "objective": VAL_KEY, "config_file": self.config_file,
                "overrides": self.overrides, "base": self.base}

    @classmethod
    def load(cls, out: Path, n_trials: int | None = None) -> "HpoSpec":
        d = read_manifest(out)
        if d is None or d["kind"] != "optuna":
            raise ConfigError(f"{out} holds no Optuna study to resume (no sweep.yaml of kind optuna)")
        return cls(d["base"], n_trials or d["n_trials"], d["depth"], d["sampler_seed"], d.get("config_file"),
                   d.get("overrides") or [], d.get("startup_trials"))


def suggest(trial: Any, depth: int) -> dict[str, Any]:
    params = {f"pos_{p}": trial.suggest_categorical(f"pos_{p}", [True, False]) for p in LORA_POSITIONS}
    params["blocks_last"] = trial.suggest_int("blocks_last", 1, depth)
    params["scale"] = trial.suggest_float("scale", *SCALE_RANGE, log=True)
    return params


def trial_cell(params: dict[str, Any]) -> Cell:
    positions = [p for p in LORA_POSITIONS if params[f"pos_{p}"]]
    return {"peft.positions": f"[{','.join(positions)}]", "peft.blocks": f"last:{params['blocks_last']}",
            SCALE_KEY: repr(float(params["scale"]))}


def trial_dir_name(params: dict[str, Any]) -> str:
    """Readable and exact: a re-proposed (or resumed) parameter set maps to the same run directory."""
    pos = "+".join(p for p in LORA_POSITIONS if params[f"pos_{p}"])
    digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]
    return f"{pos}__last-{params['blocks_last']}__s{params['scale']:.4g}__{digest}"


def objective_value(metrics: dict[str, Any]) -> tuple[float, str]:
    """Validation balanced accuracy; test balanced accuracy (flagged) only when the run has no hold-out."""
    val = val_metric(metrics, "balanced")
    if val is not None:
        return val, VAL_KEY
    return float(metrics["balanced"] or 0.0), TEST_FALLBACK


def run_hpo(spec: HpoSpec, out: Path, *, verbose: bool = False, echo: Callable[[str], None] | None = None):
    """Run (or continue) the study until it holds ``n_trials`` finished trials; returns the study."""
    import optuna

    out = Path(out)
    say = echo or (lambda msg: print(msg, file=sys.stderr, flush=True))
    check_compatible(out, "optuna", spec.base)
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, spec.to_dict())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{(out / 'optuna.db').resolve()}")
    study = optuna.create_study(storage=storage, study_name=STUDY, direction="maximize", load_if_exists=True)
    _requeue_interrupted(study, storage)
    # reseeding with the trial count keeps a resumed study from re-drawing its first random proposals
    # Optuna's TPE samples its first 10 trials at random: a study of ~10 trials is random search unless
    # ``startup_trials`` lowers that
    startup = {} if spec.startup_trials is None else {"n_startup_trials": spec.startup_trials}
    study.sampler = optuna.samplers.TPESampler(seed=spec.seed + len(study.trials), **startup)
    finished_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    remaining = spec.n_trials - len(study.get_trials(deepcopy=False, states=finished_states))

    def objective(trial: Any) -> float:
        params = suggest(trial, spec.depth)
        if not any(params[f"pos_{p}"] for p in LORA_POSITIONS):
            trial.set_user_attr("note", "no position selected")
            raise optuna.TrialPruned()
        cfg = with_shared_prefix_cache(build_cell_config(spec.base, trial_cell(params)), out)
        run_dir = out / "trials" / trial_dir_name(params)
        trial.set_user_attr("run_dir", str(run_dir.relative_to(out)))
        trial.set_user_attr("alpha", cfg.peft.alpha)
        if not (run_dir / "metrics.json").is_file():
            try:
                train_in_process(cfg, run_dir, not verbose)
            except Exception as e:  # recorded in the trials table; Optuna marks the trial failed and goes on
                trial.set_user_attr("note", f"{type(e).__name__}: {e}"[:300])
                say(f"trial {trial.number}: FAILED ({type(e).__name__}: {e})")
                raise
        metrics = json.loads((run_dir / "metrics.json").read_text())
        value, source = objective_value(metrics)
        run = metrics.get("run", {})
        attrs = {"objective": source, "wall_time_s": run.get("wall_time_s"), "epochs": run.get("epochs"),
                 "steps": run.get("steps"), "test_overall": metrics.get("overall"),
                 "test_balanced": metrics.get("balanced"), "test_few": metrics.get("few")}
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        warn = "  WARNING: objective is TEST accuracy (no val split)" if source != VAL_KEY else ""
        say(f"trial {trial.number}: {run_dir.name}  {source}={value:.4f}{warn}")
        return value

    def record(study: Any, _trial: Any) -> None:
        write_trials(study, out)

    if remaining > 0:
        study.optimize(objective, n_trials=remaining, catch=(Exception,), callbacks=[record])
    write_trials(study, out)
    return study


def _requeue_interrupted(study: Any, storage: Any) -> None:
    """Trials left RUNNING by a killed process: mark failed and enqueue their parameters again
    (same parameters → same run directory → the trainer resumes it from its checkpoint)."""
    import optuna

    study_id = storage.get_study_id_from_name(STUDY)
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        storage.set_trial_state_values(storage.get_trial_id_from_study_id_trial_number(study_id, t.number),
                                       optuna.trial.TrialState.FAIL)
        if len(t.params) == len(LORA_POSITIONS) + 2:
            study.enqueue_trial(t.params)


def trial_rows(study: Any) -> list[dict[str, Any]]:
    rows = []
    for t in study.trials:
        p, a = t.params, t.user_attrs
        positions = "+".join(q for q in LORA_POSITIONS if p.get(f"pos_{q}"))
        row = {"number": t.number, "state": t.state.name, "value": t.value, "positions": positions,
               "blocks": f"last:{p['blocks_last']}" if "blocks_last" in p else None, "scale": p.get("scale"),
               **{k: a.get(k) for k in TRIAL_COLUMNS if k in a}}
        if t.state.name == "FAIL" and "note" not in a:
            row["note"] = "failed or interrupted"
        rows.append({k: row.get(k) for k in TRIAL_COLUMNS})
    return rows


def write_trials(study: Any, out: Path) -> Path:
    """``optuna_trials.csv`` (one row per trial) and ``best_config.yaml`` of the best finished trial."""
    import csv
    import io

    rows = trial_rows(study)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(TRIAL_COLUMNS))
    w.writeheader()
    w.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    atomic_write_text(out / "optuna_trials.csv", buf.getvalue())
    done = [r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None]
    if done:
        best = max(done, key=lambda r: r["value"])
        src = out / str(best["run_dir"]) / "config.yaml"
        if src.is_file():
            shutil.copyfile(src, out / "best_config.yaml")
    return out / "optuna_trials.csv"
