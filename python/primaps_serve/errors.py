"""Exceptions carrying the gRPC status code and the server's message."""
from typing import Optional

import grpc


class PrimapsError(Exception):
    """A call failed. `code` is the grpc.StatusCode, `message` the server's text."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None):
        super().__init__(f"{(code or self.code).name}: {message}")
        self.message = message
        if code is not None:
            self.code = code


class InvalidArgument(PrimapsError):
    """The image or an option was bad (the message names which, and why)."""
    code = grpc.StatusCode.INVALID_ARGUMENT


class FailedPrecondition(PrimapsError):
    """Segment without a head, or a head older than min_head_version."""
    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(PrimapsError):
    """The server is overloaded, or the request is over a limit; retried."""
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(PrimapsError):
    """The server cannot be reached or is draining; retried."""
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(PrimapsError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unauthenticated(PrimapsError):
    """An admin call without a valid token."""
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(PrimapsError):
    code = grpc.StatusCode.PERMISSION_DENIED


class NotFound(PrimapsError):
    code = grpc.StatusCode.NOT_FOUND


_BY_CODE = {cls.code: cls for cls in [
    InvalidArgument, FailedPrecondition, ResourceExhausted, Unavailable, DeadlineExceeded,
    Unauthenticated, PermissionDenied, NotFound]}


def error_for(code: grpc.StatusCode, message: str) -> PrimapsError:
    """The exception for a status code (PrimapsError for codes without a class)."""
    cls = _BY_CODE.get(code)
    return cls(message) if cls else PrimapsError(message, code)


def from_rpc_error(error: grpc.RpcError) -> PrimapsError:
    return error_for(error.code(), error.details() or "")


def from_code_number(number: int, message: str) -> PrimapsError:
    """For the per-image errors of a stream, which carry the code as a number."""
    for code in grpc.StatusCode:
        if code.value[0] == number:
            return error_for(code, message)
    return PrimapsError(message)
