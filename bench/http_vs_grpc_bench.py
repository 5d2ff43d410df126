#!/usr/bin/python3
"""The HTTP/JSON API against gRPC, side by side in one run, on one server.

    PYTHONPATH=build/python bench/http_vs_grpc_bench.py build/server/primaps-server [requests]

The same pseudo-label request (a demo photo, labels at its original size)
through primaps_serve.Client (gRPC, raw labels) and through POST
/v1/pseudo_label (JSON with a base64 PNG, and format=png), one at a time and
from 4 threads; prints median latency and throughput per way, and their
ratio to gRPC's.
"""
import concurrent.futures
import os
import statistics
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "python", "tests"))
from conftest import DEMO_DIR, ServerProcess  # noqa: E402
from primaps_serve import Client  # noqa: E402


def main():
    os.environ["PRIMAPS_SERVER_BIN"] = sys.argv[1]
    import conftest
    conftest.SERVER_BIN = sys.argv[1]
    requests = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    photo_path = os.path.join(DEMO_DIR, "coco_example.jpg")
    photo = open(photo_path, "rb").read()
    server = ServerProcess("--cpu_threads=2")
    client = Client(server.address)
    query = "resize=160&output_size=original"

    def grpc_call():
        client.pseudo_label(photo, resize=160, output_size="original")

    def http_call(fmt):
        url = f"http://127.0.0.1:{server.http_port}/v1/pseudo_label?{query}&format={fmt}"
        request = urllib.request.Request(url, data=photo, method="POST",
                                         headers={"Content-Type": "image/jpeg"})
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()

    ways = [("gRPC (primaps_serve)", grpc_call), ("HTTP JSON", lambda: http_call("json")),
            ("HTTP PNG", lambda: http_call("png"))]
    for _, call in ways:  # warm-up
        call()
    rows = []
    # Interleaved rounds, so that the machine's noise hits every way alike.
    latencies = {name: [] for name, _ in ways}
    for _ in range(requests):
        for name, call in ways:
            start = time.perf_counter()
            call()
            latencies[name].append(1000 * (time.perf_counter() - start))
    for name, call in ways:
        start = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: call(), range(requests)))
        throughput = requests / (time.perf_counter() - start)
        rows.append((name, statistics.median(latencies[name]), throughput))
    server.stop()
    base_ms, base_tp = rows[0][1], rows[0][2]
    print(f"coco_example.jpg, resize 160, labels at the original size; {requests} requests per way")
    print(f"{'way':<22} {'median ms':>10} {'vs gRPC':>8} {'images/s (4 threads)':>21} {'vs gRPC':>8}")
    for name, ms, tp in rows:
        print(f"{name:<22} {ms:>10.1f} {ms / base_ms:>8.2f} {tp:>21.2f} {tp / base_tp:>8.2f}")


if __name__ == "__main__":
    main()
