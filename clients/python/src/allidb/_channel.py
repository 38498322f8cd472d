"""Channel settings shared by the sync and async clients."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union

import grpc

from ._convert import API_KEY_HEADER, read_pem

PemLike = Union[str, bytes, "os.PathLike[str]", None]

#: Replies (scans, queries with entities, batches) may be larger than grpcio's 4 MiB default.
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024 * 1024


@dataclass
class ChannelConfig:
    """Where and how to connect."""

    target: str
    credentials: Optional[grpc.ChannelCredentials]
    options: List[Tuple[str, object]]
    metadata: Tuple[Tuple[str, str], ...]


def channel_config(
    addr: str,
    api_key: Optional[str],
    tls: Optional[bool],
    tls_ca: PemLike,
    tls_cert: PemLike,
    tls_key: PemLike,
    tls_server_name: Optional[str],
    max_message_bytes: int,
    options: Optional[Sequence[Tuple[str, object]]],
) -> ChannelConfig:
    """Resolves the client's arguments into a target, credentials, options and metadata.

    ``addr`` is ``host:port``; an ``https://`` prefix turns TLS on and ``http://`` is
    plaintext. TLS is on when ``tls`` is true or any of ``tls_ca``/``tls_cert`` is given;
    without ``tls_ca`` the system's root certificates verify the server.
    """
    target = addr
    use_tls = bool(tls) or tls_ca is not None or tls_cert is not None
    if target.startswith("https://"):
        target = target[len("https://") :]
        use_tls = tls is not False
    elif target.startswith("http://"):
        target = target[len("http://") :]
    target = target.rstrip("/")
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("tls_cert and tls_key go together (a client certificate and its key)")
    credentials = None
    if use_tls:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read_pem(tls_ca),
            private_key=read_pem(tls_key),
            certificate_chain=read_pem(tls_cert),
        )
    channel_options: List[Tuple[str, object]] = [
        ("grpc.max_receive_message_length", int(max_message_bytes)),
        ("grpc.max_send_message_length", int(max_message_bytes)),
    ]
    if tls_server_name:
        channel_options.append(("grpc.ssl_target_name_override", tls_server_name))
    channel_options.extend(options or [])
    metadata: Tuple[Tuple[str, str], ...] = ()
    if api_key:
        metadata = ((API_KEY_HEADER, api_key),)
    return ChannelConfig(target, credentials, channel_options, metadata)
