//! Chitchat's gossip carried in authenticated UDP frames (docs/cluster.md, "Gossip frames").
//!
//! Owns the gossip socket. chitchat's own UDP transport is plaintext and accepts any datagram
//! (chitchat issue #79); this transport seals every gossip message in a frame whose HMAC-SHA256
//! tag is keyed by the shared cluster secret and bound to the cluster name, and drops every
//! datagram whose tag does not verify before chitchat sees a byte of it.
//!
//! chitchat 0.13 keeps its message codec crate-private, so this transport uses chitchat's own
//! `UdpSocket` as the codec: an *encoder* socket on an ephemeral loopback port sends each outgoing
//! message to a loopback *tap*, whose bytes are sealed and sent to the peer; a *decoder* socket
//! receives each verified payload from a loopback *feeder* and returns the decoded message. Only
//! datagrams from our own tap/feeder address are accepted on those loopback sockets.
//!
//! Invariants: `recv` never returns an error (chitchat stops gossiping for good when it does,
//! chitchat #184): socket errors are logged and absorbed, and the decoding runs in a task of its
//! own, so chitchat cancelling `recv` at each gossip tick never loses or misattributes a message.
//! Never carries anything but chitchat messages; never accepts an unauthenticated one.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use chitchat::ChitchatEnvelope;
use chitchat::transport::{RecvOutcome, SendOutcome, Socket, Transport, UdpSocket as CodecSocket};
use ring::hmac;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, warn};

/// Frame magic and version: `A`, `G` (AlliDB Gossip), format version 1.
const FRAME_HEADER: [u8; 3] = [b'A', b'G', 1];
/// HMAC-SHA256 tag length.
const TAG_LEN: usize = 32;
/// The largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;
/// How long the loopback codec hop may take before a message is given up.
const CODEC_TIMEOUT: Duration = Duration::from_secs(1);
/// Pause after a socket error before the next receive, so a persistent error does not spin.
const ERROR_BACKOFF: Duration = Duration::from_millis(50);
/// Decoded messages waiting for chitchat.
const INBOUND_QUEUE: usize = 256;

/// The gossip key: HMAC-SHA256, keyed by the cluster secret, over a label and the cluster name, so
/// that two clusters sharing a secret by mistake still cannot exchange gossip.
fn gossip_key(cluster_secret: &str, cluster_name: &str) -> hmac::Key {
    let master = hmac::Key::new(hmac::HMAC_SHA256, cluster_secret.as_bytes());
    let mut label = b"allidb gossip v1\0".to_vec();
    label.extend_from_slice(cluster_name.as_bytes());
    let derived = hmac::sign(&master, &label);
    hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref())
}

/// `header ++ tag ++ payload`, the tag covering `header ++ payload`.
fn seal(key: &hmac::Key, payload: &[u8]) -> Vec<u8> {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(&FRAME_HEADER);
    ctx.update(payload);
    let tag = ctx.sign();
    let mut frame = Vec::with_capacity(FRAME_HEADER.len() + TAG_LEN + payload.len());
    frame.extend_from_slice(&FRAME_HEADER);
    frame.extend_from_slice(tag.as_ref());
    frame.extend_from_slice(payload);
    frame
}

/// The payload of a frame whose header and tag verify.
fn open_frame<'a>(key: &hmac::Key, frame: &'a [u8]) -> Option<&'a [u8]> {
    let body = frame.strip_prefix(&FRAME_HEADER[..])?;
    if body.len() < TAG_LEN {
        return None;
    }
    let (tag, payload) = body.split_at(TAG_LEN);
    let mut signed = Vec::with_capacity(FRAME_HEADER.len() + payload.len());
    signed.extend_from_slice(&FRAME_HEADER);
    signed.extend_from_slice(payload);
    hmac::verify(key, &signed, tag).ok().map(|()| payload)
}

/// Counters of one gossip socket, for metrics and tests.
#[derive(Debug, Default)]
pub struct GossipCounters {
    /// Datagrams dropped because their frame did not verify (wrong secret, other cluster, junk).
    pub rejected: AtomicU64,
    /// Socket errors absorbed instead of stopping the gossip loop.
    pub socket_errors: AtomicU64,
}

/// A chitchat [`Transport`] whose messages travel in authenticated frames.
#[derive(Clone)]
pub struct AuthenticatedUdpTransport {
    key: hmac::Key,
    counters: Arc<GossipCounters>,
}

impl std::fmt::Debug for AuthenticatedUdpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthenticatedUdpTransport")
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl AuthenticatedUdpTransport {
    /// A transport for the cluster `cluster_name` with the shared `cluster_secret`.
    pub fn new(cluster_secret: &str, cluster_name: &str) -> Self {
        AuthenticatedUdpTransport {
            key: gossip_key(cluster_secret, cluster_name),
            counters: Arc::default(),
        }
    }

    /// The counters shared by every socket this transport opens.
    pub fn counters(&self) -> Arc<GossipCounters> {
        self.counters.clone()
    }
}

fn loopback() -> SocketAddr {
    (Ipv4Addr::LOCALHOST, 0).into()
}

#[async_trait]
impl Transport for AuthenticatedUdpTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let wire = Arc::new(
            UdpSocket::bind(listen_addr)
                .await
                .with_context(|| format!("cannot bind the gossip address {listen_addr}/UDP"))?,
        );
        let encoder = CodecSocket::open(loopback()).await?;
        let encoder_addr = encoder.local_addr()?;
        let tap = UdpSocket::bind(loopback()).await?;
        let tap_addr = tap.local_addr()?;
        let decoder = CodecSocket::open(loopback()).await?;
        let feeder = UdpSocket::bind(loopback()).await?;
        let (tx, inbound) = mpsc::channel(INBOUND_QUEUE);
        let receiver = tokio::spawn(receive_loop(
            wire.clone(),
            self.key.clone(),
            self.counters.clone(),
            decoder,
            feeder,
            tx,
        ));
        Ok(Box::new(AuthenticatedUdpSocket {
            wire,
            key: self.key.clone(),
            encoder,
            encoder_addr,
            tap,
            tap_addr,
            tap_buf: vec![0; MAX_DATAGRAM + 1],
            inbound,
            receiver,
        }))
    }
}

/// One open gossip socket.
struct AuthenticatedUdpSocket {
    wire: Arc<UdpSocket>,
    key: hmac::Key,
    encoder: CodecSocket,
    encoder_addr: SocketAddr,
    tap: UdpSocket,
    tap_addr: SocketAddr,
    tap_buf: Vec<u8>,
    inbound: mpsc::Receiver<RecvOutcome>,
    receiver: JoinHandle<()>,
}

impl Drop for AuthenticatedUdpSocket {
    fn drop(&mut self) {
        // The receive task holds the wire socket: stop it so the port is released.
        self.receiver.abort();
    }
}

impl AuthenticatedUdpSocket {
    /// The encoded bytes of `envelope`, through the loopback encoder and tap.
    async fn encode(&mut self, envelope: ChitchatEnvelope) -> anyhow::Result<usize> {
        let sent = self.encoder.send(self.tap_addr, envelope).await?;
        loop {
            let (n, from) =
                tokio::time::timeout(CODEC_TIMEOUT, self.tap.recv_from(&mut self.tap_buf))
                    .await
                    .context("gossip encoder timed out")??;
            // A stale datagram (an earlier message that timed out) or a stranger: skip it.
            if from == self.encoder_addr && n == sent.num_bytes_sent {
                return Ok(n);
            }
        }
    }
}

#[async_trait]
impl Socket for AuthenticatedUdpSocket {
    fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.wire
            .local_addr()
            .context("cannot read the gossip socket's address")
    }

    async fn send(
        &mut self,
        to: SocketAddr,
        envelope: ChitchatEnvelope,
    ) -> anyhow::Result<SendOutcome> {
        let n = self.encode(envelope).await?;
        let frame = seal(&self.key, &self.tap_buf[..n]);
        anyhow::ensure!(
            frame.len() <= MAX_DATAGRAM,
            "gossip message of {} bytes exceeds one datagram",
            frame.len()
        );
        let num_bytes_sent = self
            .wire
            .send_to(&frame, to)
            .await
            .with_context(|| format!("cannot send gossip to {to}"))?;
        Ok(SendOutcome { num_bytes_sent })
    }

    async fn recv(&mut self) -> anyhow::Result<RecvOutcome> {
        // The receive task lives as long as this socket, so the channel never closes first; if it
        // did (the task panicked), wait forever rather than stop chitchat's loop.
        match self.inbound.recv().await {
            Some(outcome) => Ok(outcome),
            None => std::future::pending().await,
        }
    }
}

/// Receives frames on the wire, verifies them, decodes them through the loopback decoder and
/// queues them for chitchat with the peer's address. Runs until its socket is dropped.
async fn receive_loop(
    wire: Arc<UdpSocket>,
    key: hmac::Key,
    counters: Arc<GossipCounters>,
    mut decoder: CodecSocket,
    feeder: UdpSocket,
    queue: mpsc::Sender<RecvOutcome>,
) {
    let mut buf = vec![0; MAX_DATAGRAM + 1];
    let (Ok(decoder_addr), Ok(feeder_addr)) = (decoder.local_addr(), feeder.local_addr()) else {
        warn!("gossip decoder sockets have no address: gossip receive disabled");
        return;
    };
    loop {
        let (n, from) = match wire.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(err) => {
                counters.socket_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %err, "gossip receive error (absorbed, gossip continues)");
                tokio::time::sleep(ERROR_BACKOFF).await;
                continue;
            }
        };
        let Some(payload) = open_frame(&key, &buf[..n]) else {
            counters.rejected.fetch_add(1, Ordering::Relaxed);
            debug!(from = %from, len = n, "gossip datagram rejected: frame does not verify");
            continue;
        };
        if let Err(err) = feeder.send_to(payload, decoder_addr).await {
            counters.socket_errors.fetch_add(1, Ordering::Relaxed);
            warn!(error = %err, "gossip decoder hop failed (absorbed)");
            continue;
        }
        let decoded = loop {
            match tokio::time::timeout(CODEC_TIMEOUT, decoder.recv()).await {
                Ok(Ok(out)) if out.from_addr == feeder_addr => break Some(out),
                // A datagram from a stranger on the loopback port: never trusted.
                Ok(Ok(_)) => continue,
                Ok(Err(err)) => {
                    counters.socket_errors.fetch_add(1, Ordering::Relaxed);
                    warn!(error = %err, "gossip decoder error (absorbed)");
                    break None;
                }
                // An authenticated payload chitchat could not decode (a peer of another
                // version): chitchat logged it; drop it.
                Err(_) => break None,
            }
        };
        let Some(decoded) = decoded else { continue };
        let outcome = RecvOutcome {
            from_addr: from,
            envelope: decoded.envelope,
            num_bytes_received: n,
        };
        if queue.send(outcome).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_verify_only_with_the_same_secret_and_cluster() {
        let key = gossip_key("s3cret", "prod");
        let frame = seal(&key, b"payload");
        assert_eq!(open_frame(&key, &frame), Some(&b"payload"[..]));
        assert_eq!(open_frame(&gossip_key("other", "prod"), &frame), None);
        assert_eq!(open_frame(&gossip_key("s3cret", "staging"), &frame), None);
        let mut flipped = frame.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(open_frame(&key, &flipped), None);
        assert_eq!(open_frame(&key, &frame[..10]), None);
        assert_eq!(open_frame(&key, b""), None);
    }

    #[tokio::test]
    async fn junk_datagrams_are_dropped_and_gossip_keeps_receiving() {
        let transport = AuthenticatedUdpTransport::new("s3cret", "prod");
        let mut receiver = transport.open(loopback()).await.unwrap();
        let mut sender = transport.open(loopback()).await.unwrap();
        let recv_addr = receiver.local_addr().unwrap();
        let raw = UdpSocket::bind(loopback()).await.unwrap();
        raw.send_to(b"junk", recv_addr).await.unwrap();
        // A chitchat message sent by an outsider with the wrong key.
        let outsider = AuthenticatedUdpTransport::new("guess", "prod");
        let mut outsider_socket = outsider.open(loopback()).await.unwrap();
        let syn = || ChitchatEnvelope {
            version: chitchat::ProtocolVersion::V0,
            message: chitchat::ChitchatMessage::BadCluster,
        };
        outsider_socket.send(recv_addr, syn()).await.unwrap();
        sender.send(recv_addr, syn()).await.unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), receiver.recv())
            .await
            .expect("the authenticated message arrives")
            .unwrap();
        assert_eq!(got.from_addr, sender.local_addr().unwrap());
        assert_eq!(got.envelope, syn());
        // Nothing else is queued: the junk and the outsider's message were dropped.
        assert!(
            tokio::time::timeout(Duration::from_millis(300), receiver.recv())
                .await
                .is_err()
        );
        assert_eq!(transport.counters().rejected.load(Ordering::Relaxed), 2);
    }
}
