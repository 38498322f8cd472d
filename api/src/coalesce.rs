//! [`CoalescedWrites`]: a gRPC server connection whose small replies leave in one write.
//!
//! Why: the HTTP/2 layer (h2) writes a unary reply as HEADERS + DATA + trailing HEADERS. On a
//! socket that offers vectored writes it copies a DATA payload of at most 256 bytes into its
//! write buffer and *chains* a larger one, and a chained payload must reach the socket before
//! the next frame is buffered: so every reply of more than ~8 results took two `writev`s and
//! woke the client twice, the second carrying 10 bytes of trailers that the client waits for
//! (docs/benchmarks.md, "One question, fast"). On a socket without vectored writes h2 copies
//! payloads of up to 1 KiB instead, and frames its whole reply into one buffer.
//!
//! Owns: a write buffer in front of one connection that reports no vectored writes. Writes are
//! copied into it, and a flush writes everything buffered in as few calls as the socket takes,
//! so a reply of up to 1 KiB leaves with its trailers in one call. A larger reply makes h2 flush
//! its frames before buffering the trailers: a flush holding more than [`DEFER_ABOVE`] bytes is
//! therefore deferred once (the task is woken, so it is polled again at once), and the next
//! flush, after the trailers in the same poll or in the next poll, writes all of it in one call.
//! Reads pass through.
//!
//! Invariants: bytes reach the socket in the order written; a flush that returns `Ready` has
//! written everything before it, or was deferred and its task woken (the next flush writes it);
//! a shutdown writes the buffer first. At most [`MAX_BUFFERED`] bytes are held: past that a
//! write waits for the buffer to drain.
//! Never: drop or reorder bytes, buffer without bound, hold bytes past the task's next poll.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// Bytes held before a write waits for the socket: a few replies' worth.
pub const MAX_BUFFERED: usize = 256 * 1024;
/// A flush holding more than this (h2's chained payload: larger than 1 KiB) is deferred once.
pub const DEFER_ABOVE: usize = 1024;

/// A connection whose writes wait in a buffer until the next flush (see the module docs).
#[derive(Debug)]
pub struct CoalescedWrites<T> {
    inner: T,
    buffer: Vec<u8>,
    /// Bytes of `buffer` already written to `inner`.
    written: usize,
    /// A flush was deferred: the next one writes the buffer.
    deferred: bool,
}

impl<T> CoalescedWrites<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            buffer: Vec::new(),
            written: 0,
            deferred: false,
        }
    }
}

impl<T: AsyncWrite + Unpin> CoalescedWrites<T> {
    /// Writes the whole buffer to `inner`.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buffer.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buffer[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buffer.clear();
        self.written = 0;
        self.deferred = false;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CoalescedWrites<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CoalescedWrites<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.buffer.len() >= MAX_BUFFERED {
            ready!(self.poll_drain(cx))?;
        }
        self.buffer.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    /// False: h2 then frames a reply of up to 1 KiB into one buffer (see the module docs).
    fn is_write_vectored(&self) -> bool {
        false
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.deferred && self.buffer.len() - self.written > DEFER_ABOVE {
            // A large reply's frames: its trailers come before the task's next flush.
            self.deferred = true;
            cx.waker().wake_by_ref();
            return Poll::Ready(Ok(()));
        }
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<T: Connected> Connected for CoalescedWrites<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};

    use super::*;

    /// A socket that records each write call and takes at most `limit` bytes per call.
    struct Recorder {
        writes: Vec<Vec<u8>>,
        limit: usize,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(self.limit);
            self.writes.push(buf[..n].to_vec());
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn write(io: &mut CoalescedWrites<Recorder>, bytes: &[u8]) {
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(
            Pin::new(&mut *io).poll_write(&mut cx, bytes),
            Poll::Ready(Ok(n)) if n == bytes.len()
        ));
    }

    fn flush(io: &mut CoalescedWrites<Recorder>) {
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(
            Pin::new(&mut *io).poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
    }

    #[test]
    fn writes_leave_together_at_the_flush_in_order() {
        let mut io = CoalescedWrites::new(Recorder {
            writes: Vec::new(),
            limit: usize::MAX,
        });
        assert!(!io.is_write_vectored(), "h2 must copy small payloads");
        // h2's frame buffer, then a chained payload, then a flush: one write.
        write(&mut io, b"headers+data-head");
        write(&mut io, b"payload");
        assert!(io.inner.writes.is_empty());
        flush(&mut io);
        assert_eq!(io.inner.writes, vec![b"headers+data-headpayload".to_vec()]);
        // A shutdown writes what is buffered.
        write(&mut io, b"bye");
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(
            Pin::new(&mut io).poll_shutdown(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(io.inner.writes.last().map(Vec::as_slice), Some(&b"bye"[..]));
        // Past the bound, a write drains the buffer first.
        let big = vec![7u8; MAX_BUFFERED];
        write(&mut io, &big);
        write(&mut io, b"after");
        assert_eq!(io.inner.writes.last().map(Vec::len), Some(MAX_BUFFERED));
    }

    #[derive(Default)]
    struct CountWakes(AtomicUsize);

    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_large_reply_and_its_trailers_leave_in_one_write() {
        let wakes = Arc::new(CountWakes::default());
        let waker = wakes.clone().into();
        let mut cx = Context::from_waker(&waker);
        let mut io = CoalescedWrites::new(Recorder {
            writes: Vec::new(),
            limit: usize::MAX,
        });
        let data = vec![1u8; DEFER_ABOVE + 1];
        write(&mut io, &data);
        assert!(matches!(
            Pin::new(&mut io).poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert!(io.inner.writes.is_empty(), "the first flush is deferred");
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "and the task woken");
        write(&mut io, b"trailers");
        flush(&mut io);
        assert_eq!(io.inner.writes, vec![[&data[..], b"trailers"].concat()]);
        // Alone (nothing follows), it is written by the flush of the poll the wake causes.
        write(&mut io, &data);
        assert!(matches!(
            Pin::new(&mut io).poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(io.inner.writes.len(), 1);
        flush(&mut io);
        assert_eq!(io.inner.writes.len(), 2);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_socket_taking_part_of_the_buffer_gets_the_rest_in_order() {
        let mut io = CoalescedWrites::new(Recorder {
            writes: Vec::new(),
            limit: 4,
        });
        write(&mut io, b"0123456789");
        flush(&mut io);
        assert_eq!(io.inner.writes.concat(), b"0123456789".to_vec());
        assert_eq!(io.inner.writes.len(), 3);
        flush(&mut io);
        assert_eq!(io.inner.writes.len(), 3, "nothing left to write");
    }
}
