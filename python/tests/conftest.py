"""Starts real primaps-server processes for the tests.

Needs PRIMAPS_SERVER_BIN (the built server) and the package on the path
(PYTHONPATH=build/python, or installed); ctest sets both.
"""
import json
import os
import re
import socket
import struct
import subprocess
import tempfile
import time

import numpy as np
import pytest

SERVER_BIN = os.environ.get("PRIMAPS_SERVER_BIN", "build/server/primaps-server")
DEMO_DIR = os.environ.get("PRIMAPS_DEMO_DIR", os.path.join(
    os.path.dirname(__file__), "..", "..", "..", "shared", "data", "demo"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """primaps-server on loopback ports; `port` and `http_port` once it serves."""

    def __init__(self, *flags, port=0, http_port=0):
        self.flags = list(flags)
        self.log = tempfile.NamedTemporaryFile(prefix="primaps_server_", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [SERVER_BIN, f"--listen=127.0.0.1:{port}", "--metrics_listen=",
             f"--http_listen=127.0.0.1:{http_port}", *self.flags],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline:
            text = open(self.log.name).read()
            m = re.search(r"serving on port (\d+), metrics on port \d+, http on port (\d+)", text)
            if m:
                self.port, self.http_port = int(m.group(1)), int(m.group(2))
                self.address = f"127.0.0.1:{self.port}"
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"primaps-server exited during start-up:\n{text}")
            time.sleep(0.05)
        raise RuntimeError("primaps-server did not start in 60 s")

    def kill(self):
        self.process.kill()
        self.process.wait()

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        os.unlink(self.log.name)


@pytest.fixture(scope="session")
def server():
    s = ServerProcess("--cpu_threads=2", "--resize=160")
    yield s
    s.stop()


@pytest.fixture
def demo_photo():
    path = os.path.join(DEMO_DIR, "coco_example.jpg")
    if not os.path.exists(path):
        pytest.fail(f"the demo photos are not at {DEMO_DIR}; set PRIMAPS_DEMO_DIR")
    return path


def head_checkpoint(classes, feature_dim, seed=1):
    """A head for the built-in backbone in the safetensors layout of DESIGN.md
    section 5, with random weights."""
    rng = np.random.default_rng(seed)
    tensors = {}
    for name in ("theta_m", "theta_r"):
        tensors[f"{name}.v"] = rng.standard_normal((classes, feature_dim)).astype("<f4")
        tensors[f"{name}.g"] = np.full((classes,), 4.0, dtype="<f4")
    header = {"__metadata__": {"backbone": "builtin", "classes": str(classes),
                               "feature_dim": str(feature_dim), "step": "0"}}
    data = b""
    for name, array in tensors.items():
        raw = array.tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    header_bytes = json.dumps(header).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    return struct.pack("<Q", len(header_bytes)) + header_bytes + data
