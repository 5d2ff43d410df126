#!/usr/bin/python3
"""PyTorch side of the ViT forward benchmark (see vit_forward_bench.sh).

  vit_forward_bench.py write WEIGHTS.safetensors   # random ViT-S/8 weights
  vit_forward_bench.py time WEIGHTS.safetensors THREADS REPS
  vit_forward_bench.py pipeline WEIGHTS.safetensors THREADS REPS IMAGES_DIR PRECISION
  vit_forward_bench.py onnx WEIGHTS.safetensors OUT.onnx HEIGHT WIDTH

`onnx` exports the same model's features (patch tokens after the final
norm, 384 x H/8 x W/8) with torch.onnx.export, opset 14, for a fixed
1 x 3 x HEIGHT x WIDTH input (peer_bench.sh times it in ONNX Runtime).

`pipeline` times the reference pipeline per image on the same weights
(vit_serving_bench.sh): decode (Pillow), preprocess, the backbone's
forward (in PRECISION: fp32, or bf16 as model.bfloat16()), PriMaPs' mask
proposals and steps 3-5 up to the CRF (tests/golden/make_golden.py, the
method's statement in PyTorch), argmax. The CRF is left out: the
reference's (pydensecrf) is not in Debian.
"""
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden"))
from make_golden import ViT, preprocess, primaps_crf_input, primaps_proposals, save_safetensors  # noqa: E402

SIZE = 320


def model():
    # DINO ViT-S/8: width 384, 12 blocks, 6 heads, 28x28 stored position grid.
    return ViT(False, 8, 28, dim=384, depth=12, heads=6).eval()


def main():
    torch.manual_seed(0)
    if sys.argv[1] == "write":
        save_safetensors(sys.argv[2], dict(model().state_dict()))
        return
    if sys.argv[1] == "onnx":
        export_onnx(load(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        return
    path, threads, reps = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    m = load(path)
    if sys.argv[1] == "pipeline":
        pipeline(m, threads, reps, sys.argv[5], sys.argv[6])
        return
    x = torch.linspace(-1, 1, 3 * SIZE * SIZE).reshape(1, 3, SIZE, SIZE)
    times = []
    with torch.inference_mode():
        m.features(x)
        for _ in range(reps):
            start = time.perf_counter()
            m.features(x)
            times.append(time.perf_counter() - start)
    times.sort()
    print(json.dumps({"impl": "pytorch", "threads": threads, "median_s": round(times[len(times) // 2], 4),
                      "min_s": round(times[0], 4)}))


class Features(torch.nn.Module):
    def __init__(self, vit):
        super().__init__()
        self.vit = vit

    def forward(self, x):
        return self.vit.features(x)


def export_onnx(m, out, height, width):
    x = torch.zeros(1, 3, height, width)
    with torch.no_grad():
        # The input size is fixed: the interpolated position embeddings are a
        # constant of the graph (the tracer cannot export DINO's bicubic
        # interpolation by scale factor).
        n = (height // m.patch) * (width // m.patch)
        # prepare_tokens passes (height, width), as DINO names them (w, h).
        pos = m.interpolate_pos_encoding(torch.zeros(1, n + 1, m.pos_embed.shape[-1]),
                                         height, width).clone()
        m.interpolate_pos_encoding = lambda x, w, h: pos
        torch.onnx.export(Features(m), (x,), out, opset_version=14,
                          input_names=["image"], output_names=["features"])


def load(path):
    m = model()
    # Load the exact weights the C++ side uses.
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        data = f.read()
    sd = {k: torch.frombuffer(bytearray(data[v["data_offsets"][0]:v["data_offsets"][1]]),
                              dtype=torch.float32).reshape(v["shape"])
          for k, v in header.items() if k != "__metadata__"}
    m.load_state_dict(sd)
    return m


def pipeline(m, threads, reps, images_dir, precision):
    import numpy as np
    from PIL import Image
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    m = m.to(dtype)
    paths = sorted(os.path.join(images_dir, n) for n in os.listdir(images_dir))
    times = []
    with torch.inference_mode():
        for i in range(reps + 1):  # the first is a warm-up
            start = time.perf_counter()
            img = torch.from_numpy(np.array(Image.open(paths[i % len(paths)]).convert("RGB")))
            x = preprocess(img, SIZE, "center", 8)[None].to(dtype)
            feat = m.features(x)[0].float()
            masks, _ = primaps_proposals(feat)
            _, _, probs = primaps_crf_input(masks, SIZE, SIZE)
            probs.argmax(0)
            if i > 0:
                times.append(time.perf_counter() - start)
    times.sort()
    print(json.dumps({"impl": "python", "precision": precision, "threads": threads,
                      "median_s": round(times[len(times) // 2], 4)}))

if __name__ == "__main__":
    main()
