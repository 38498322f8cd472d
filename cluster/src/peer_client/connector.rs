//! [`PeerConnector`]: how a channel to a peer opens its TCP connection: `TCP_NODELAY`, and its
//! writes behind [`CoalescedWrites`]. h2 writes a unary request as HEADERS (from the
//! connection's task), then DATA and an empty DATA that ends the stream (from the task that
//! sends the body, once the stream has send capacity): three writes, and up to three wake-ups
//! of the peer, without it; two with it, the message and its end of stream together
//! (docs/cluster.md "Calls between nodes").
//!
//! Invariants: connects only to the address it was made for, whatever the URI (the channel's
//! URI names the same address); TLS, when configured, is layered on top by the channel.
//! Must never: change the bytes of a request.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tonic::codegen::Service;
use tonic::transport::Uri;

use crate::coalesce::CoalescedWrites;

/// Opens the connection of one peer's channel (see the module docs).
#[derive(Clone, Copy, Debug)]
pub(super) struct PeerConnector {
    addr: SocketAddr,
}

impl PeerConnector {
    pub(super) fn new(addr: SocketAddr) -> Self {
        Self { addr }
    }
}

impl Service<Uri> for PeerConnector {
    type Response = TokioIo<CoalescedWrites<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let addr = self.addr;
        Box::pin(async move {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(coalesced(stream))
        })
    }
}

/// `stream` as a channel's connection: its writes coalesced until h2 flushes.
fn coalesced<T>(stream: T) -> TokioIo<CoalescedWrites<T>> {
    TokioIo::new(CoalescedWrites::new(stream))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::io::IoSlice;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full, StreamBody};
    use hyper::body::{Frame, Incoming};
    use hyper_util::rt::TokioExecutor;
    use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};

    use super::*;

    /// A socket (vectored, like TCP) that counts the write calls reaching it.
    struct CountedWrites {
        inner: DuplexStream,
        writes: Arc<AtomicUsize>,
    }

    impl AsyncRead for CountedWrites {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for CountedWrites {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            Pin::new(&mut self.inner).poll_write(cx, buf)
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// A unary gRPC request's body as tonic sends it: one message (a query vector's size, above
    /// the 1 KiB h2 copies), and the end of the stream only when polled again.
    fn request(
        message: usize,
    ) -> http::Request<
        StreamBody<
            futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>,
        >,
    > {
        let frames = vec![Ok(Frame::data(Bytes::from(vec![7u8; message])))];
        http::Request::post("http://peer/allidb.cluster.v1.Replica/SearchSeeds")
            .body(StreamBody::new(futures_util::stream::iter(frames)))
            .expect("a static request is valid")
    }

    #[tokio::test]
    async fn a_request_to_a_peer_leaves_in_two_writes() {
        let (client, server) = tokio::io::duplex(1 << 20);
        let writes = Arc::new(AtomicUsize::new(0));
        let io = coalesced(CountedWrites {
            inner: client,
            writes: writes.clone(),
        });
        tokio::spawn(
            hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(
                TokioIo::new(server),
                hyper::service::service_fn(|request: http::Request<Incoming>| async move {
                    let body = request.into_body().collect().await?.to_bytes();
                    Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::from(
                        body.len().to_string(),
                    ))))
                }),
            ),
        );
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .expect("the handshake over a duplex succeeds");
        tokio::spawn(connection);
        for round in 0..4 {
            let before = writes.load(Ordering::SeqCst);
            let reply = sender
                .send_request(request(1_700))
                .await
                .expect("the server answers");
            let body = reply
                .into_body()
                .collect()
                .await
                .expect("a body")
                .to_bytes();
            assert_eq!(&body[..], b"1700");
            if round > 0 {
                // (The first round also acknowledges the server's settings.) HEADERS leave
                // first, from the connection's task; the message and its end of stream come
                // from the body's task and leave together (three writes without coalescing).
                assert_eq!(
                    writes.load(Ordering::SeqCst) - before,
                    2,
                    "HEADERS, then DATA with the end of the stream"
                );
            }
        }
    }
}
