"""PriMaPs Serve from Python: unsupervised semantic segmentation over gRPC.

    from primaps_serve import Client
    client = Client("127.0.0.1:50051")
    labels = client.pseudo_label("photo.jpg")      # H x W uint8, 255 = ignore
"""
from .client import Admin, Client, LabelResult, ModelInfo, StreamItem
from .errors import (DeadlineExceeded, FailedPrecondition, InvalidArgument, NotFound,
                     PermissionDenied, PrimapsError, ResourceExhausted, Unauthenticated,
                     Unavailable)

__all__ = [
    "Admin", "Client", "LabelResult", "ModelInfo", "StreamItem", "DeadlineExceeded",
    "FailedPrecondition", "InvalidArgument", "NotFound", "PermissionDenied", "PrimapsError",
    "ResourceExhausted", "Unauthenticated", "Unavailable",
]
__version__ = "1.0.0"
