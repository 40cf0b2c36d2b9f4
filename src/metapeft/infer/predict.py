"""Label new images with a trained run: batched, a bad file is an error row and never stops the batch."""

from __future__ import annotations

import csv
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TextIO

import torch

from ..data.decode import pil_to_array, read_image, worker_threads
from ..progress import progress
from .rebuild import InferenceModel


def _decode(path: Path, size: int | None) -> torch.Tensor | str:
    """uint8 [1, C, H, W], or the reason the file cannot be used."""
    try:
        arr = pil_to_array(read_image(path), size)
    except Exception as e:  # DataError for bad files; anything else is still this file's problem
        return str(e)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1)[None].contiguous()  # PIL's array is read-only


@torch.no_grad()
def predict_files(im: InferenceModel, files: list[Path], *, top_k: int = 5, batch_size: int = 64,
                  show_progress: bool = True) -> list[dict[str, Any]]:
    """One row per file, in input order: path, pred, prob, top-k names / probabilities, error ("" if none)."""
    k = max(1, min(top_k, len(im.classes)))
    decode_size = im.export.get("decode_size")
    rows: list[dict[str, Any]] = []
    batches = [files[i:i + batch_size] for i in range(0, len(files), batch_size)]
    with ThreadPoolExecutor(worker_threads(batch_size)) as pool:
        for batch in progress(batches, "predict", unit="batches", enabled=show_progress):
            decoded = list(pool.map(lambda p: _decode(p, decode_size), batch))
            good = [i for i, d in enumerate(decoded) if isinstance(d, torch.Tensor)]
            probs = None
            if good:
                x = torch.cat([im.transform(decoded[i].to(im.device)) for i in good])
                probs = im.model(x).float().softmax(dim=-1).cpu()
            by_pos = {i: j for j, i in enumerate(good)}
            for i, path in enumerate(batch):
                if i not in by_pos:
                    rows.append(_error_row(path, k, decoded[i]))
                    continue
                p, idx = probs[by_pos[i]].topk(k)
                row: dict[str, Any] = {"path": str(path), "pred": im.classes[int(idx[0])], "prob": round(float(p[0]), 6)}
                for r in range(k):
                    row[f"top{r + 1}"] = im.classes[int(idx[r])]
                    row[f"top{r + 1}_prob"] = round(float(p[r]), 6)
                row["error"] = ""
                rows.append(row)
    return rows


def _error_row(path: Path, k: int, why: str) -> dict[str, Any]:
    row: dict[str, Any] = {"path": str(path), "pred": "", "prob": ""}
    for r in range(k):
        row[f"top{r + 1}"] = ""
        row[f"top{r + 1}_prob"] = ""
    row["error"] = why
    return row


def write_predictions(rows: list[dict[str, Any]], out: Path | TextIO, *, as_json: bool = False) -> None:
    """CSV (header + one line per image) or a JSON list, to a path or an open text stream."""
    if isinstance(out, Path):
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="") as f:
            write_predictions(rows, f, as_json=as_json)
        return
    if as_json:
        json.dump(rows, out, indent=1)
        out.write("\n")
        return
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["path", "pred", "prob", "error"])
    w.writeheader()
    w.writerows(rows)
    out.write(buf.getvalue())
