"""Exceptions of the `allidb` package: one class per gRPC status code.

Every failed call raises a subclass of :class:`AlliDBError` carrying the status code and the
server's message (which names the offending field, e.g.
``vectors[1]: vector dimension mismatch: expected 3, got 2``).
"""

from __future__ import annotations

from typing import Optional

import grpc

__all__ = [
    "AlliDBError",
    "Cancelled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
    "PutManyError",
    "from_rpc_error",
]


class AlliDBError(Exception):
    """A call that failed: ``code`` is the gRPC status, ``message`` the server's text."""

    #: The status code of this class (subclasses set it).
    status_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str, code: Optional[grpc.StatusCode] = None) -> None:
        super().__init__(message)
        self.code: grpc.StatusCode = code if code is not None else self.status_code
        self.message: str = message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


class Cancelled(AlliDBError):
    """The call was cancelled (``CANCELLED``)."""

    status_code = grpc.StatusCode.CANCELLED


class Unknown(AlliDBError):
    """``UNKNOWN``."""

    status_code = grpc.StatusCode.UNKNOWN


class InvalidArgument(AlliDBError):
    """A malformed field; the message names it by its path (``INVALID_ARGUMENT``)."""

    status_code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(AlliDBError):
    """The call's timeout passed (``DEADLINE_EXCEEDED``)."""

    status_code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(AlliDBError):
    """``NOT_FOUND`` (e.g. a scan naming another node)."""

    status_code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(AlliDBError):
    """``ALREADY_EXISTS``."""

    status_code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(AlliDBError):
    """The key's role is too weak or a tenant field names another tenant (``PERMISSION_DENIED``)."""

    status_code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(AlliDBError):
    """The tenant's unindexed tail stayed full; retry with backoff (``RESOURCE_EXHAUSTED``)."""

    status_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(AlliDBError):
    """``FAILED_PRECONDITION`` (e.g. a replica addressed under a stale view of the ring)."""

    status_code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(AlliDBError):
    """``ABORTED``."""

    status_code = grpc.StatusCode.ABORTED


class OutOfRange(AlliDBError):
    """The request is larger than the server's ``server.max_request_bytes`` (``OUT_OF_RANGE``)."""

    status_code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(AlliDBError):
    """The server does not serve this RPC (``UNIMPLEMENTED``)."""

    status_code = grpc.StatusCode.UNIMPLEMENTED


class Internal(AlliDBError):
    """A server failure, logged on the server (``INTERNAL``)."""

    status_code = grpc.StatusCode.INTERNAL


class Unavailable(AlliDBError):
    """The server cannot be reached, is still opening, or a consistency level cannot be met
    (``UNAVAILABLE``)."""

    status_code = grpc.StatusCode.UNAVAILABLE


class DataLoss(AlliDBError):
    """Stored data failed its checksum (``DATA_LOSS``)."""

    status_code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(AlliDBError):
    """The API key is missing, unknown or expired (``UNAUTHENTICATED``)."""

    status_code = grpc.StatusCode.UNAUTHENTICATED


class PutManyError(AlliDBError):
    """:meth:`allidb.Client.put_many` wrote some entities but the server refused others.

    ``result`` is the :class:`allidb.PutManyResult` (counts and each failed id with the
    server's reason); the code is ``INVALID_ARGUMENT``.
    """

    status_code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, result: "object") -> None:
        failures = getattr(result, "failures", [])
        first = failures[0] if failures else None
        text = f"{getattr(result, 'failed', 0)} of {getattr(result, 'total', 0)} entities failed"
        if first is not None:
            text += f"; first: {first.id!r}: {first.message}"
        super().__init__(text)
        self.result = result


_BY_CODE = {
    cls.status_code: cls
    for cls in (
        Cancelled,
        Unknown,
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        OutOfRange,
        Unimplemented,
        Internal,
        Unavailable,
        DataLoss,
        Unauthenticated,
    )
}


def error_class(code: grpc.StatusCode) -> type[AlliDBError]:
    """The exception class of a status code (:class:`AlliDBError` for an unlisted one)."""
    return _BY_CODE.get(code, AlliDBError)


def from_rpc_error(error: grpc.RpcError) -> AlliDBError:
    """Converts a grpcio error (sync or ``grpc.aio``) into the package's exception."""
    code_fn = getattr(error, "code", None)
    details_fn = getattr(error, "details", None)
    code = code_fn() if callable(code_fn) else grpc.StatusCode.UNKNOWN
    message = details_fn() if callable(details_fn) else str(error)
    if code is None:
        code = grpc.StatusCode.UNKNOWN
    return error_class(code)(message or "", code)
