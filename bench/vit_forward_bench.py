#!/usr/bin/python3
"""PyTorch side of the ViT forward benchmark (see vit_forward_bench.sh).

  vit_forward_bench.py write WEIGHTS.safetensors   # random ViT-S/8 weights
  vit_forward_bench.py time WEIGHTS.safetensors THREADS REPS
"""
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden"))
from make_golden import ViT, save_safetensors  # noqa: E402

SIZE = 320


def model():
    # DINO ViT-S/8: width 384, 12 blocks, 6 heads, 28x28 stored position grid.
    return ViT(False, 8, 28, dim=384, depth=12, heads=6).eval()


def main():
    torch.manual_seed(0)
    if sys.argv[1] == "write":
        save_safetensors(sys.argv[2], dict(model().state_dict()))
        return
    path, threads, reps = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
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


if __name__ == "__main__":
    main()
