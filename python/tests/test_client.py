"""primaps_serve.Client against a real primaps-server."""
import io
import os
import threading

import numpy as np
import pytest
from PIL import Image

import primaps_serve
from primaps_serve import Client, FailedPrecondition, InvalidArgument, ResourceExhausted, Unauthenticated
from conftest import ServerProcess, free_port, head_checkpoint


@pytest.fixture
def client(server):
    with Client(server.address, timeout=60) as c:
        yield c


def test_pseudo_labels_from_a_path_bytes_numpy_and_pil_agree(client, demo_photo):
    from_path = client.pseudo_label(demo_photo, output_size="original")
    with open(demo_photo, "rb") as f:
        from_bytes = client.pseudo_label(f.read(), output_size="original")
    pil = Image.open(demo_photo).convert("RGB")
    from_pil = client.pseudo_label(pil, output_size="original")
    from_numpy = client.pseudo_label(np.asarray(pil), output_size="original")
    assert from_path.dtype == np.uint8
    assert from_path.shape == (pil.height, pil.width)
    assert np.array_equal(from_path, from_bytes)
    # Raw pixels decoded by Pillow against the server's own JPEG decoder.
    assert np.array_equal(from_pil, from_numpy)
    assert (from_pil == from_path).mean() > 0.9


def test_propose_detailed_has_masks_areas_and_the_model(client, demo_photo):
    result = client.propose(demo_photo, detailed=True, threshold=0.5, crf=False)
    assert result.labels.shape == (160, 160)  # the server's --resize, center crop
    assert result.mask_count > 0
    assert result.labels.max() == result.mask_count
    assert sum(result.mask_area) == 160 * 160
    assert np.bincount(result.labels.ravel(), minlength=result.mask_count + 1).tolist() == \
        list(result.mask_area)
    assert result.model.backbone == "builtin"
    assert result.model.head_version == 0
    assert result.model.precision == "fp32"


def test_features_are_d_by_h_by_w(client, demo_photo):
    features = client.features(demo_photo, resize=64)
    assert features.dtype == np.float32
    assert features.ndim == 3 and features.shape[1:] == (8, 8)
    assert np.isfinite(features).all()
    half = client.features(demo_photo, resize=64, float16=True)
    assert np.allclose(half, features, rtol=1e-2, atol=1e-2)


def test_projection_features_need_a_projection(client, demo_photo):
    with pytest.raises(FailedPrecondition, match="no projection"):
        client.features(demo_photo, resize=64, kind="projection")
    with pytest.raises(ValueError):
        client.features(demo_photo, kind="code")


def test_a_stego_server_returns_its_code(tmp_path, demo_photo):
    import shutil
    import subprocess
    import sys
    golden = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "golden")
    out = tmp_path / "stego"
    subprocess.run([sys.executable, os.path.join(golden, "make_stego_checkpoint.py"),
                    str(out), str(demo_photo), "64"], check=True)
    server = ServerProcess(f"--weights={out / 'stego.ckpt'}", "--resize=64")
    try:
        client = Client(server.address)
        code = client.features(demo_photo, kind="projection")
        assert code.shape == (70, 8, 8)
        assert client.features(demo_photo).shape == (384, 8, 8)
        model = client.model()
        assert model.projection == "stego" and model.projection_dim == 70
    finally:
        server.stop()
        shutil.rmtree(out)  # four checkpoints of ~90 MB


def test_a_bad_image_raises_invalid_argument_with_the_servers_text(client):
    with pytest.raises(InvalidArgument) as raised:
        client.pseudo_label(b"this is not an image")
    assert raised.value.code.name == "INVALID_ARGUMENT"
    assert "unsupported image format" in raised.value.message
    assert isinstance(raised.value, primaps_serve.PrimapsError)
    with pytest.raises(ValueError, match="crop='diagonal'"):
        client.propose(b"x", crop="diagonal")
    with pytest.raises(TypeError, match="uint8"):
        client.propose(np.zeros((8, 8, 3), dtype=np.float32))


def test_segment_without_a_head_raises_failed_precondition(client, demo_photo):
    with pytest.raises(FailedPrecondition, match="needs a head"):
        client.segment(demo_photo)


def test_stream_yields_every_image_and_an_error_for_the_bad_one(client, demo_photo, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    paths = [str(tmp_path / f"img{i}.jpg") for i in range(5)]
    for p in paths:
        with open(demo_photo, "rb") as src, open(p, "wb") as dst:
            dst.write(src.read())
    items = list(client.stream_pseudo_labels(paths + [str(bad)], window=3))
    assert sorted(i.path for i in items) == sorted(paths + [str(bad)])
    by_path = {i.path: i for i in items}
    assert isinstance(by_path[str(bad)].error, InvalidArgument)
    for p in paths:
        assert by_path[p].error is None
        assert by_path[p].labels.shape == (160, 160)


def test_stream_resumes_across_a_server_restart(demo_photo, tmp_path):
    port = free_port()
    server = ServerProcess("--cpu_threads=2", "--resize=96", port=port)
    paths = []
    for i in range(12):
        p = tmp_path / f"img{i:02d}.jpg"
        p.write_bytes(open(demo_photo, "rb").read())
        paths.append(str(p))
    client = Client(f"127.0.0.1:{port}", retries=8, backoff=0.25)
    seen = []
    try:
        for item in client.stream_pseudo_labels(paths, window=1):
            assert item.error is None, item.error
            seen.append(item.path)
            if len(seen) == 3:
                server.kill()  # mid-stream, then a new server on the same port
                server = ServerProcess("--cpu_threads=2", "--resize=96", port=port)
    finally:
        server.stop()
        client.close()
    assert sorted(set(seen)) == sorted(paths)


def test_a_dead_server_raises_unavailable_clearly(demo_photo):
    client = Client(f"127.0.0.1:{free_port()}", retries=1, backoff=0.05, timeout=5)
    with pytest.raises(primaps_serve.Unavailable):
        client.pseudo_label(demo_photo)
    with pytest.raises(primaps_serve.Unavailable, match="images unanswered"):
        list(client.stream_pseudo_labels([demo_photo]))


def test_overload_is_retried_with_backoff(demo_photo):
    server = ServerProcess("--cpu_threads=1", "--max_queue=1", "--resize=160")
    try:
        def hammer(retries, outcomes):
            c = Client(server.address, retries=retries, backoff=0.1)
            try:
                c.pseudo_label(demo_photo, output_size="original")
                outcomes.append("ok")
            except ResourceExhausted:
                outcomes.append("refused")
            finally:
                c.close()

        def run(retries):
            outcomes = []
            threads = [threading.Thread(target=hammer, args=(retries, outcomes)) for _ in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return outcomes

        without = run(0)
        assert "refused" in without  # the server does refuse
        assert run(12) == ["ok"] * 6  # and retries get every call through
    finally:
        server.stop()


def test_admin_load_status_rollback_and_segment(tmp_path, demo_photo):
    token = tmp_path / "token"
    token.write_text("secret-token\n")
    server = ServerProcess("--resize=96", f"--admin_token_file={token}")
    try:
        client = Client(server.address, token="secret-token")
        dim = client.features(demo_photo).shape[0]
        with pytest.raises(FailedPrecondition):
            client.admin.checkpoint()
        first = client.admin.load(head_checkpoint(4, dim, seed=1))
        assert first.head_version == 1 and first.classes == 4
        second = client.admin.load(head_checkpoint(6, dim, seed=2))
        assert second.head_version == 2 and second.classes == 6
        segmentation = client.segment(demo_photo, detailed=True, probabilities=True, crf=False)
        assert segmentation.labels.shape == (96, 96)
        assert segmentation.labels.max() < 6
        assert segmentation.probabilities.shape == (6, 96, 96)
        status = client.admin.status()
        assert status["model"].head_version == 2 and status["swaps"] == 2
        back = client.admin.rollback()
        assert back.classes == 4 and back.head_version == 3
        assert client.pseudo_label(demo_photo, detailed=True).model.head_version == 3
        served, data = client.admin.checkpoint()
        assert served.head_version == 3 and served.source == "AdminService rollback"
        reloaded = client.admin.load(data)  # the file it returns is a head it takes
        assert reloaded.classes == 4 and reloaded.head_version == 4
        with pytest.raises(InvalidArgument):
            client.admin.load(b"not a checkpoint")
        with pytest.raises(Unauthenticated):
            Client(server.address).admin.status()
    finally:
        server.stop()


def test_tls_with_the_servers_certificate(tmp_path, demo_photo):
    import subprocess
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(tmp_path / "server.key"), "-out", str(tmp_path / "server.pem"),
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True)
    server = ServerProcess("--resize=64", f"--tls_cert={tmp_path / 'server.pem'}",
                           f"--tls_key={tmp_path / 'server.key'}")
    try:
        root = (tmp_path / "server.pem").read_bytes()
        with Client(f"localhost:{server.port}", tls=True, root_certificates=root) as client:
            assert client.propose(demo_photo).shape == (64, 64)
        # Without the certificate the handshake fails: UNAVAILABLE, retried, then raised.
        with Client(f"localhost:{server.port}", tls=True, retries=0, timeout=10) as client:
            with pytest.raises(primaps_serve.Unavailable):
                client.propose(demo_photo)
    finally:
        server.stop()


def test_a_repeated_path_is_answered_twice(client, demo_photo):
    items = list(client.stream_pseudo_labels([demo_photo, demo_photo], window=2))
    assert len(items) == 2 and all(i.error is None for i in items)
    assert len({i.path for i in items}) == 2
