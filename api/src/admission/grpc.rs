//! Admission of gRPC calls before their message is decoded.
//!
//! What it owns: [`AdmittedService`], a wrapper around a tonic service that reads the 5-byte
//! prefix of a call's first message (compression flag, length), charges the budget that many
//! bytes, and only then hands the call, with the bytes it read put back in front of the body,
//! to the service. A client-streaming method is charged the largest message allowed before
//! anything is read (the service holds one message of it at a time). The permit is held until
//! the service has answered: a client that sends its message slowly holds what it declared.
//!
//! Invariants: nothing but the prefix (and whatever arrived in the same frames) is read before
//! admission, so a waiting call holds at most its HTTP/2 flow-control window; a refused call is
//! answered `RESOURCE_EXHAUSTED` naming the budget and never reaches the service; the bytes
//! passed on are exactly the bytes received. Must never: change a request or a reply it
//! admits, or wait beyond the budget's wait.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tonic::codegen::Service;
use tonic::server::NamedService;

use super::budget::{Payer, RequestBudget};
use crate::auth::Authenticator;

/// Bytes of a gRPC message prefix: compression flag (1) and length (4, big endian).
const PREFIX_BYTES: usize = 5;

/// Who the calls of a service are charged to.
#[derive(Clone, Debug)]
pub enum ChargeTo {
    /// The caller's tenant, from its API key (the public service).
    Caller(Arc<Authenticator>),
    /// The node only (the node-to-node service: replica writes, hints, reads).
    Node,
}

impl ChargeTo {
    fn payer(&self, headers: &http::HeaderMap) -> Payer {
        match self {
            Self::Caller(auth) => auth.payer_of(headers),
            Self::Node => Payer::Node,
        }
    }
}

/// A tonic service whose calls are admitted against a [`RequestBudget`] first.
#[derive(Clone, Debug)]
pub struct AdmittedService<S> {
    inner: S,
    budget: RequestBudget,
    charge_to: ChargeTo,
    max_message_bytes: u64,
    streaming_methods: &'static [&'static str],
}

impl<S> AdmittedService<S> {
    /// Admits the calls of `inner` (whose messages are at most `max_message_bytes`; the
    /// methods named in `streaming_methods` take a stream of them) against `budget`.
    pub fn new(
        inner: S,
        budget: RequestBudget,
        charge_to: ChargeTo,
        max_message_bytes: usize,
        streaming_methods: &'static [&'static str],
    ) -> Self {
        Self {
            inner,
            budget,
            charge_to,
            max_message_bytes: u64::try_from(max_message_bytes).unwrap_or(u64::MAX),
            streaming_methods,
        }
    }
}

impl<S: NamedService> NamedService for AdmittedService<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<tonic::body::Body>> for AdmittedService<S>
where
    S: Service<http::Request<tonic::body::Body>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        // The service polled ready is the one that takes the call; a clone stays for the next.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let budget = self.budget.clone();
        let payer = self.charge_to.payer(request.headers());
        let method = request.uri().path().rsplit('/').next().unwrap_or_default();
        let streaming = self.streaming_methods.contains(&method);
        let max_message_bytes = self.max_message_bytes;
        Box::pin(async move {
            let (parts, mut body) = request.into_parts();
            let (buffered, bytes) = if streaming {
                (VecDeque::new(), max_message_bytes)
            } else {
                let (buffered, declared) = read_prefix(&mut body).await;
                let declared = u64::from(declared.unwrap_or(0)).min(max_message_bytes);
                (buffered, declared + PREFIX_BYTES as u64)
            };
            let admitted = match budget.admit(&payer, bytes).await {
                Ok(admitted) => admitted,
                Err(shed) => {
                    tracing::debug!(budget = shed.budget.label(), "gRPC call shed");
                    return Ok(tonic::Status::resource_exhausted(shed.message()).into_http());
                }
            };
            let body = tonic::body::Body::new(Replayed {
                buffered,
                rest: body,
            });
            let response = inner.call(http::Request::from_parts(parts, body)).await;
            drop(admitted);
            response
        })
    }
}

/// Reads frames of `body` until the first message's prefix is complete (or the body ends or
/// fails); returns the frames read (to be replayed) and the message length it declares.
async fn read_prefix<B>(body: &mut B) -> (VecDeque<Result<Frame<Bytes>, B::Error>>, Option<u32>)
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut buffered = VecDeque::new();
    let mut prefix = [0u8; PREFIX_BYTES];
    let mut have = 0;
    while have < PREFIX_BYTES {
        match body.frame().await {
            None => break,
            Some(Err(error)) => {
                buffered.push_back(Err(error));
                break;
            }
            Some(Ok(frame)) => {
                let Some(data) = frame.data_ref() else {
                    buffered.push_back(Ok(frame));
                    break;
                };
                let take = (PREFIX_BYTES - have).min(data.len());
                prefix[have..have + take].copy_from_slice(&data[..take]);
                have += take;
                buffered.push_back(Ok(frame));
            }
        }
    }
    let declared = (have == PREFIX_BYTES)
        .then(|| u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]));
    (buffered, declared)
}

/// A body that yields the frames read before admission, then the rest of the original body.
struct Replayed<B: Body> {
    buffered: VecDeque<Result<Frame<Bytes>, B::Error>>,
    rest: B,
}

// Nothing of a `Replayed` is ever pinned in place: the buffered frames are moved out, and the
// rest of the body is `Unpin` itself.
impl<B: Body + Unpin> Unpin for Replayed<B> {}

impl<B> Body for Replayed<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        if let Some(frame) = this.buffered.pop_front() {
            return Poll::Ready(Some(frame));
        }
        Pin::new(&mut this.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.buffered.is_empty() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.buffered.is_empty() {
            self.rest.size_hint()
        } else {
            SizeHint::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    type Frames = std::vec::IntoIter<Result<Frame<Bytes>, std::convert::Infallible>>;

    fn frames(chunks: &[&'static [u8]]) -> StreamBody<futures_util::stream::Iter<Frames>> {
        let frames: Vec<_> = chunks
            .iter()
            .map(|chunk| Ok(Frame::data(Bytes::from_static(chunk))))
            .collect();
        StreamBody::new(futures_util::stream::iter(frames))
    }

    /// Every byte the service would see: the frames read for the prefix, then the rest.
    async fn replay<B>(buffered: VecDeque<Result<Frame<Bytes>, B::Error>>, rest: B) -> Bytes
    where
        B: Body<Data = Bytes> + Unpin,
        B::Error: std::fmt::Debug,
    {
        Replayed { buffered, rest }
            .collect()
            .await
            .expect("test bodies do not fail")
            .to_bytes()
    }

    #[tokio::test]
    async fn the_prefix_split_over_frames_is_read_and_every_byte_is_replayed() {
        let chunks: [&'static [u8]; 4] = [b"\0\0", b"\0\x01", b"\x02abc", b"defgh"];
        let mut body = frames(&chunks);
        let (buffered, declared) = read_prefix(&mut body).await;
        assert_eq!(declared, Some(0x0102));
        assert_eq!(buffered.len(), 3, "read past the prefix");
        assert_eq!(&replay(buffered, body).await[..], b"\0\0\0\x01\x02abcdefgh");
    }

    #[tokio::test]
    async fn a_body_shorter_than_a_prefix_declares_nothing() {
        let mut body = Full::new(Bytes::from_static(b"\0\0"));
        let (buffered, declared) = read_prefix(&mut body).await;
        assert_eq!(declared, None);
        assert_eq!(&replay(buffered, body).await[..], b"\0\0");
    }
}
