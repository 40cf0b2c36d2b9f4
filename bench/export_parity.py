"""How close are a finished run's exports to metapeft's own model, and how fast is predict?

    .venv/bin/python bench/export_parity.py RUN IMAGE_FOLDER [--repeat 4]

Prints (a) max |Δ feature| between metapeft's model and HF peft's ``PeftModel.from_pretrained`` on the
plain timm backbone (export/hf_peft), (b) max |Δ logit| between metapeft and onnxruntime on
export/model.onnx, (c) max |Δ logit| of plain timm + export/merged.safetensors (normalise-then-linear
head), all on the folder's images preprocessed as export/config.json says, and (d) ``predict``
throughput in images/s (decode + preprocess + forward, the folder listed ``--repeat`` times).
Needs peft and onnxruntime (the test extra). Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path)
    ap.add_argument("images", type=Path)
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=64)
    args = ap.parse_args()

    import onnxruntime as ort
    from peft import PeftModel
    from safetensors.torch import load_file

    from metapeft.backbones import create_backbone
    from metapeft.export.merged import plain_timm_model
    from metapeft.infer import collect_images, load_inference_model, predict_files
    from metapeft.infer.predict import _decode

    files = collect_images([args.images])
    im = load_inference_model(args.run, merge=False)
    info, export = im.export, args.run / "export"
    x = torch.cat([im.transform(_decode(f, info.get("decode_size"))) for f in files[:256]])
    with torch.no_grad():
        ours_logits = im.model(x)
        ours_feat = im.model.forward_head(im.model.forward_features(x), pre_logits=True)
        cfg = im.cfg
        torch.manual_seed(cfg.train.seed)
        base = create_backbone(cfg.model.name, cfg.model.pretrained, img_size=cfg.model.img_size,
                               num_classes=info["num_classes"], **cfg.model.options).eval()
        ref = PeftModel.from_pretrained(base, str(export / "hf_peft")).eval()
        ref_feat = ref.forward_head(ref.forward_features(x), pre_logits=True)
        sess = ort.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
        onnx_logits = torch.from_numpy(sess.run(["logits"], {"pixel_values": x.numpy()})[0])
        plain = plain_timm_model(info).eval()
        plain.load_state_dict(load_file(str(export / "merged.safetensors")), strict=True)
        timm_logits = plain.get_classifier()(F.normalize(plain.forward_head(plain.forward_features(x),
                                                                            pre_logits=True), dim=-1))
    print(f"images compared: {len(x)}  ({info['architecture']} at {info['input_size'][-1]} px)")
    print(f"peft vs metapeft   max |Δ feature| = {(ref_feat - ours_feat).abs().max():.3g}")
    print(f"onnx vs metapeft   max |Δ logit|   = {(onnx_logits - ours_logits).abs().max():.3g}")
    print(f"timm merged vs mp  max |Δ logit|   = {(timm_logits - ours_logits).abs().max():.3g}")

    merged = load_inference_model(args.run)
    many = files * args.repeat
    start = time.perf_counter()
    predict_files(merged, many, batch_size=args.batch_size, show_progress=False)
    wall = time.perf_counter() - start
    print(f"predict: {len(many)} images in {wall:.1f} s = {len(many) / wall:.0f} images/s "
          f"(batch {args.batch_size}, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
