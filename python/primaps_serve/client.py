"""A typed client for primaps-server's PriMaPsService and AdminService."""
import dataclasses
import os
import random
import threading
import time
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import grpc
import numpy as np

from . import errors
from ._proto.primaps.v1 import admin_pb2, admin_pb2_grpc, service_pb2, service_pb2_grpc, types_pb2
from .images import ImageLike, label_map_to_array, to_image_message

# Retried with backoff: the server is overloaded, draining or restarting.
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)

_CROP = {"center": types_pb2.CROP_MODE_CENTER, "full": types_pb2.CROP_MODE_FULL}
_FILTER = {"bilinear": types_pb2.RESIZE_FILTER_BILINEAR,
           "antialias": types_pb2.RESIZE_FILTER_ANTIALIAS}
_OUTPUT = {"processed": types_pb2.OUTPUT_SIZE_PROCESSED,
           "original": types_pb2.OUTPUT_SIZE_ORIGINAL}
_CRF_AT = {"processed": types_pb2.CRF_RESOLUTION_PROCESSED,
           "original": types_pb2.CRF_RESOLUTION_ORIGINAL}


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """Which model answered: backbone, head version (0 = none), classes, ..."""
    backbone: str
    head_version: int
    classes: int
    precision: str
    source: str
    checkpoint_digest: str
    # The projection the heads read ("stego"; "" without one) and its width.
    projection: str = ""
    projection_dim: int = 0

    @staticmethod
    def from_proto(info: types_pb2.ModelInfo) -> "ModelInfo":
        return ModelInfo(info.backbone, info.head_version, info.classes, info.precision,
                         info.source, info.checkpoint_digest, info.projection,
                         info.projection_dim)


@dataclasses.dataclass
class LabelResult:
    """A full answer (`detailed=True`): labels and masks as H x W uint8 arrays."""
    labels: np.ndarray
    model: ModelInfo
    masks: Optional[np.ndarray] = None
    mask_count: int = 0
    mask_area: Tuple[int, ...] = ()
    probabilities: Optional[np.ndarray] = None  # classes x H x W (segment)


@dataclasses.dataclass
class StreamItem:
    """One image of stream_pseudo_labels: labels, or the error for it alone."""
    path: str
    labels: Optional[np.ndarray] = None
    model: Optional[ModelInfo] = None
    error: Optional[errors.PrimapsError] = None


def _preprocess(resize: int = 0, crop: Optional[str] = None, threshold: Optional[float] = None,
                crf: Optional[bool] = None, resize_filter: Optional[str] = None,
                output_size: Optional[str] = None,
                crf_resolution: Optional[str] = None) -> types_pb2.Preprocess:
    def choose(table: Dict[str, int], name: str, value: Optional[str]) -> int:
        if value is None:
            return 0
        if value not in table:
            raise ValueError(f"{name}={value!r}: expected one of {', '.join(table)}")
        return table[value]

    p = types_pb2.Preprocess(resize=resize, crop=choose(_CROP, "crop", crop),
                             resize_filter=choose(_FILTER, "resize_filter", resize_filter),
                             output_size=choose(_OUTPUT, "output_size", output_size),
                             crf_resolution=choose(_CRF_AT, "crf_resolution", crf_resolution))
    if threshold is not None:
        p.threshold = threshold
    if crf is not None:
        p.crf = crf
    return p


class Admin:
    """AdminService: needs the server's admin token (Client(token=...))."""

    def __init__(self, client: "Client"):
        self._client = client
        self._stub = admin_pb2_grpc.AdminServiceStub(client._channel)

    def load(self, checkpoint) -> ModelInfo:
        """Loads a head: a path on the server (str), or the file's bytes."""
        if isinstance(checkpoint, (bytes, bytearray)):
            request = admin_pb2.LoadCheckpointRequest(data=bytes(checkpoint))
        else:
            request = admin_pb2.LoadCheckpointRequest(path=os.fspath(checkpoint))
        response = self._client._call(self._stub.LoadCheckpoint, request, admin=True)
        return ModelInfo.from_proto(response.model)

    def status(self) -> dict:
        """The served model, the history of heads and the swap counters."""
        status = self._client._call(self._stub.GetModelStatus, admin_pb2.GetModelStatusRequest(),
                                    admin=True)
        return {"model": ModelInfo.from_proto(status.model),
                "history": [ModelInfo.from_proto(m) for m in status.history],
                "swaps": status.swaps, "refused_swaps": status.refused_swaps}

    def rollback(self) -> ModelInfo:
        """Serves the previous head again (under a new version)."""
        response = self._client._call(self._stub.Rollback, admin_pb2.RollbackRequest(), admin=True)
        return ModelInfo.from_proto(response.model)

    def checkpoint(self) -> "tuple[ModelInfo, bytes]":
        """The serving head and its safetensors file (what load() takes)."""
        response = self._client._call(self._stub.GetCheckpoint, admin_pb2.GetCheckpointRequest(),
                                      admin=True)
        return ModelInfo.from_proto(response.model), response.data


class Client:
    """A connection to primaps-server.

        client = Client("127.0.0.1:50051")
        labels = client.pseudo_label("photo.jpg")   # H x W uint8, 255 = ignore

    Images are paths, encoded bytes, uint8 numpy arrays or PIL images.
    Preprocessing options (resize, crop, threshold, crf, resize_filter,
    output_size, crf_resolution) default to the server's. Calls that fail
    with UNAVAILABLE or RESOURCE_EXHAUSTED are retried `retries` times with
    exponential backoff; every failure raises a PrimapsError subclass
    carrying the gRPC code and the server's message.
    """

    def __init__(self, address: str, *, tls: bool = False,
                 root_certificates: Optional[bytes] = None, token: Optional[str] = None,
                 timeout: float = 120.0, retries: int = 4, backoff: float = 0.25,
                 max_message_bytes: int = 64 << 20):
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        if tls:
            credentials = grpc.ssl_channel_credentials(root_certificates=root_certificates)
            self._channel = grpc.secure_channel(address, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(address, options=options)
        self._stub = service_pb2_grpc.PriMaPsServiceStub(self._channel)
        self._token = token
        self.address = address
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.admin = Admin(self)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- Calls -----------------------------------------------------------------

    def _sleep_before_retry(self, attempt: int) -> None:
        # Exponential, with equal jitter: half fixed, half random.
        delay = self.backoff * (2 ** attempt)
        time.sleep(delay / 2 + random.uniform(0, delay / 2))

    def _call(self, method, request, admin: bool = False):
        metadata = [("authorization", f"Bearer {self._token}")] if admin and self._token else None
        for attempt in range(self.retries + 1):
            try:
                return method(request, timeout=self.timeout, metadata=metadata)
            except grpc.RpcError as e:
                if e.code() in RETRYABLE and attempt < self.retries:
                    self._sleep_before_retry(attempt)
                    continue
                raise errors.from_rpc_error(e) from None

    def _request(self, image: ImageLike, min_head_version: int = 0,
                 **preprocess) -> service_pb2.ImageRequest:
        return service_pb2.ImageRequest(image=to_image_message(image),
                                        preprocess=_preprocess(**preprocess),
                                        min_head_version=min_head_version)

    def propose(self, image: ImageLike, *, detailed: bool = False, **options):
        """PriMaPs mask proposals: H x W uint8, 0 = background, k = mask k."""
        response = self._call(self._stub.ProposeMasks, self._request(image, **options))
        masks = label_map_to_array(response.masks)
        if not detailed:
            return masks
        return LabelResult(labels=masks, masks=masks, model=ModelInfo.from_proto(response.model),
                           mask_count=response.mask_count, mask_area=tuple(response.mask_area))

    def pseudo_label(self, image: ImageLike, *, detailed: bool = False, **options):
        """Pseudo labels: H x W uint8 class ids (mask ids without a head), 255 = ignore."""
        response = self._call(self._stub.PseudoLabel, self._request(image, **options))
        labels = label_map_to_array(response.labels)
        if not detailed:
            return labels
        return LabelResult(labels=labels, masks=label_map_to_array(response.masks),
                           model=ModelInfo.from_proto(response.model),
                           mask_count=response.mask_count)

    def segment(self, image: ImageLike, *, detailed: bool = False, probabilities: bool = False,
                **options):
        """The head's segmentation: H x W uint8 class ids. Needs a head."""
        request = self._request(image, **options)
        request.probabilities = probabilities
        response = self._call(self._stub.Segment, request)
        labels = label_map_to_array(response.labels)
        if not detailed:
            return labels
        probs = None
        if probabilities:
            probs = np.asarray(response.probabilities, dtype=np.float32).reshape(
                response.classes, response.labels.height, response.labels.width)
        return LabelResult(labels=labels, model=ModelInfo.from_proto(response.model),
                           probabilities=probs)

    def features(self, image: ImageLike, *, float16: bool = False, kind: str = "backbone",
                 **options) -> np.ndarray:
        """Features as a D x h x w float32 array (the patch grid): the
        backbone's (kind="backbone", what PriMaPs reads) or, on a server
        serving STEGO's checkpoint, its projection's code (kind="projection",
        what the heads read)."""
        kinds = {"backbone": service_pb2.FEATURE_KIND_BACKBONE,
                 "projection": service_pb2.FEATURE_KIND_PROJECTION}
        if kind not in kinds:
            raise ValueError(f"kind is {kind!r}; expected 'backbone' or 'projection'")
        request = service_pb2.FeatureRequest(
            image=to_image_message(image), preprocess=_preprocess(**options),
            type=service_pb2.FEATURE_TYPE_FLOAT16 if float16 else service_pb2.FEATURE_TYPE_FLOAT32,
            features=kinds[kind])

        def extract_one(req, timeout, metadata):
            # ExtractFeatures is a stream; one request, one response.
            return next(iter(self._stub.ExtractFeatures(iter([req]), timeout=timeout,
                                                        metadata=metadata)))

        response = self._call(extract_one, request)
        dtype = np.float16 if response.type == service_pb2.FEATURE_TYPE_FLOAT16 else np.float32
        return np.frombuffer(response.data, dtype=dtype).reshape(
            response.dim, response.height, response.width).astype(np.float32)

    def model(self) -> ModelInfo:
        """The model the server serves (from a tiny ProposeMasks call)."""
        # 32 pixels: a grid of at least 2x2 patches for patch sizes 8 to 16.
        tiny = np.zeros((32, 32, 3), dtype=np.uint8)
        return self.propose(tiny, detailed=True, resize=32, crf=False).model

    def stream_pseudo_labels(self, images: Iterable[ImageLike], *, window: int = 8,
                             **options) -> Iterator[StreamItem]:
        """Pseudo labels for many images over one stream, as they finish
        (not in input order; match them by `path`). A bad image yields a
        StreamItem with `error` and the stream goes on. When the connection
        breaks (a server restart), the stream is opened again with backoff
        and the images not answered yet are sent again; after `retries`
        failed reconnections it raises Unavailable naming how many images
        are left."""
        pending: List[Tuple[str, ImageLike]] = []
        keys = set()
        for n, image in enumerate(images):
            key = os.fspath(image) if isinstance(image, (str, os.PathLike)) else f"#{n}"
            # Keys match answers to requests, so each must be unique.
            if key in keys:
                key = f"{key}#{n}"
            keys.add(key)
            pending.append((key, image))
        failures = 0
        while pending:
            answered = set()
            try:
                for item in self._stream_once(pending, window, options):
                    answered.add(item.path)
                    failures = 0
                    yield item
                pending = [p for p in pending if p[0] not in answered]
            except grpc.RpcError as e:
                pending = [p for p in pending if p[0] not in answered]
                if e.code() not in RETRYABLE:
                    raise errors.from_rpc_error(e) from None
                if failures >= self.retries:
                    raise errors.Unavailable(
                        f"the stream broke ({e.code().name}: {e.details()}) and could not be "
                        f"reopened after {failures} tries; {len(pending)} images unanswered") from None
                self._sleep_before_retry(failures)
                failures += 1

    def _stream_once(self, pending, window: int, options) -> Iterator[StreamItem]:
        # At most `window` images in flight: the request iterator waits for
        # answers before sending more.
        slots = threading.Semaphore(window)
        cancelled = threading.Event()

        def requests():
            for key, image in pending:
                while not slots.acquire(timeout=0.1):
                    if cancelled.is_set():
                        return
                request = self._request(image, **options)
                request.request_id = key
                yield request

        call = self._stub.StreamPseudoLabels(requests(), timeout=None)
        try:
            for response in call:
                slots.release()
                if response.HasField("error"):
                    yield StreamItem(path=response.request_id, error=errors.from_code_number(
                        response.error.code, response.error.message))
                else:
                    result = response.pseudo_label
                    yield StreamItem(path=response.request_id,
                                     labels=label_map_to_array(result.labels),
                                     model=ModelInfo.from_proto(result.model))
        finally:
            cancelled.set()
            call.cancel()
