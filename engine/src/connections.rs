//! Accepting connections within limits. Without them, ~1,100 idle TCP connections that
//! never said a word exhausted the server's file descriptors and locked every client out.
//!
//! - At most `max` connections are open at once.
//! - A connection is *unproven* until its first bytes arrive. When every slot is taken, a
//!   new connection evicts the oldest unproven one, so silent connections cannot lock real
//!   clients out; only when every open connection has spoken is a new one closed at once
//!   (the client sees a quick failure, not a hang).
//! - A connection must send its first bytes within `handshake`, and then something at least
//!   every `idle`. A live HTTP/2 client always does: the server pings it (keep-alive) more
//!   often than `idle`, and its acknowledgement counts. A peer that is silent is closed.
//! - Refusals are logged at most once per [`WARN_EVERY`], with a count: a flood of
//!   connections must not become a flood of log lines (a blocked log pipe stalls a server).

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::sync;

/// At most one warning about refused connections per this long.
pub const WARN_EVERY: Duration = Duration::from_secs(10);
/// How long a new connection waits for the slot of the connection it evicted.
const EVICTION_WAIT: Duration = Duration::from_secs(1);

/// Connection limits of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections at once.
    pub max: usize,
    /// Time a new connection has to send its first bytes.
    pub handshake: Duration,
    /// Time a connection may stay silent (longer than the keep-alive interval).
    pub idle: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max: 512,
            handshake: Duration::from_secs(10),
            idle: Duration::from_secs(120),
        }
    }
}

impl ConnectionLimits {
    /// How often the server pings an HTTP/2 client: well inside `idle`, so a live client's
    /// acknowledgements keep its connection open while a long query computes.
    pub fn keepalive_interval(&self) -> Duration {
        (self.idle / 4).max(Duration::from_secs(1))
    }
}

/// A connection that has not sent a byte yet, as the accept loop sees it.
#[derive(Debug, Default)]
struct Unproven {
    proven: AtomicBool,
    evicted: AtomicBool,
    /// Wakes the connection's reader to notice its eviction.
    waker: AtomicWaker,
}

/// What the accept loop keeps between connections.
struct Acceptor {
    listener: TcpListener,
    limits: ConnectionLimits,
    slots: Arc<Semaphore>,
    /// Unproven connections, oldest first (pruned as they speak, close or are evicted).
    unproven: Arc<Mutex<VecDeque<Arc<Unproven>>>>,
    refused_since_warning: u64,
    last_warning: Option<Instant>,
}

impl Acceptor {
    /// A slot for a new connection: a free one, else the slot of the oldest unproven
    /// connection, which is evicted for it.
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Some(permit);
        }
        let victim = {
            let mut unproven = sync::lock(&self.unproven);
            unproven.retain(|u| Arc::strong_count(u) > 1 && !u.proven.load(Ordering::Acquire));
            unproven.pop_front()
        }?;
        victim.evicted.store(true, Ordering::Release);
        victim.waker.wake();
        tokio::time::timeout(EVICTION_WAIT, self.slots.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }

    fn refused(&mut self) {
        self.refused_since_warning += 1;
        let now = Instant::now();
        if self
            .last_warning
            .is_none_or(|last| now.duration_since(last) >= WARN_EVERY)
        {
            tracing::warn!(
                max = self.limits.max,
                refused = self.refused_since_warning,
                "connection limit reached: new connections closed (count since the last warning)"
            );
            self.refused_since_warning = 0;
            self.last_warning = Some(now);
        }
    }
}

/// Accepted connections within the limits, for `serve_with_incoming`.
pub fn incoming(
    listener: TcpListener,
    limits: ConnectionLimits,
) -> impl Stream<Item = Result<Connection, io::Error>> + Send + 'static {
    let acceptor = Acceptor {
        listener,
        limits,
        slots: Arc::new(Semaphore::new(limits.max.max(1))),
        unproven: Arc::default(),
        refused_since_warning: 0,
        last_warning: None,
    };
    futures::stream::unfold(acceptor, |mut acceptor| async move {
        loop {
            let stream = match acceptor.listener.accept().await {
                Ok((stream, _peer)) => stream,
                // Out of descriptors or a connection reset before it was accepted: the
                // listener is still good. Wait a moment rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(permit) = acceptor.slot().await else {
                acceptor.refused();
                drop(stream);
                continue;
            };
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
            let unproven = Arc::new(Unproven::default());
            sync::lock(&acceptor.unproven).push_back(unproven.clone());
            let connection = Connection::new(stream, permit, unproven, acceptor.limits);
            return Some((Ok(connection), acceptor));
        }
    })
}

/// One accepted connection: the stream, its slot, and its silence timer.
pub struct Connection {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    /// Until the first bytes arrive.
    unproven: Option<Arc<Unproven>>,
    /// When the connection is closed if nothing more is read: reset by every read.
    silence: Pin<Box<Sleep>>,
    idle: Duration,
}

impl Connection {
    fn new(stream: TcpStream, slot: OwnedSemaphorePermit, unproven: Arc<Unproven>, limits: ConnectionLimits) -> Self {
        Self {
            stream,
            _slot: slot,
            unproven: Some(unproven),
            silence: Box::pin(tokio::time::sleep(limits.handshake)),
            idle: limits.idle,
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("stream", &self.stream)
            .finish_non_exhaustive()
    }
}

impl Connected for Connection {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Connection {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Some(unproven) = &self.unproven {
            unproven.waker.register(cx.waker());
            if unproven.evicted.load(Ordering::Acquire) {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "a silent connection was evicted for a new one",
                )));
            }
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    let idle = self.idle;
                    self.silence.as_mut().reset(Instant::now() + idle);
                    if let Some(unproven) = self.unproven.take() {
                        unproven.proven.store(true, Ordering::Release);
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match self.silence.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection was silent too long",
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn served(limits: ConnectionLimits) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Echo each connection's bytes back until it closes, as a server would read it.
        let task = tokio::spawn(async move {
            let mut accepted = Box::pin(incoming(listener, limits));
            while let Some(Ok(mut connection)) = accepted.next().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = connection.read(&mut buf).await {
                        if n == 0 || connection.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        (addr, task)
    }

    /// Whether the server has closed `stream` (reads end or fail within a second).
    async fn closed(stream: &mut TcpStream) -> bool {
        let mut buf = [0u8; 8];
        matches!(
            tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await,
            Ok(Ok(0) | Err(_))
        )
    }

    #[tokio::test]
    async fn silent_connections_make_way_and_talking_ones_fill_the_limit() {
        let limits = ConnectionLimits {
            max: 2,
            ..ConnectionLimits::default()
        };
        let (addr, task) = served(limits).await;
        let mut buf = [0u8; 2];
        // Two silent connections fill the limit; a third evicts the oldest of them.
        let mut silent = TcpStream::connect(addr).await.expect("silent");
        let _quiet = TcpStream::connect(addr).await.expect("quiet");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut first = TcpStream::connect(addr).await.expect("first");
        first.write_all(b"hi").await.expect("write");
        first.read_exact(&mut buf).await.expect("answered");
        assert!(closed(&mut silent).await, "the oldest silent connection made way");
        let mut second = TcpStream::connect(addr).await.expect("second");
        second.write_all(b"ho").await.expect("write");
        second.read_exact(&mut buf).await.expect("answered");
        // Both slots now hold connections that have spoken: a new one is closed at once.
        let mut third = TcpStream::connect(addr).await.expect("third connects");
        assert!(closed(&mut third).await, "the third connection is closed");
        first.write_all(b"hi").await.expect("write");
        first.read_exact(&mut buf).await.expect("the first still works");
        // Closing one frees its slot.
        drop(first);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut fourth = TcpStream::connect(addr).await.expect("fourth");
        fourth.write_all(b"ok").await.expect("write");
        fourth.read_exact(&mut buf).await.expect("a freed slot is reused");
        task.abort();
    }

    #[tokio::test]
    async fn a_silent_connection_is_closed_and_a_talking_one_is_not() {
        let limits = ConnectionLimits {
            max: 8,
            handshake: Duration::from_millis(200),
            idle: Duration::from_millis(600),
        };
        let (addr, task) = served(limits).await;
        let mut silent = TcpStream::connect(addr).await.expect("silent");
        let mut talking = TcpStream::connect(addr).await.expect("talking");
        let mut buf = [0u8; 1];
        for _ in 0..6 {
            talking.write_all(b"x").await.expect("write");
            talking.read_exact(&mut buf).await.expect("echo");
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        assert!(closed(&mut silent).await, "silent past the handshake time");
        talking.write_all(b"y").await.expect("still open");
        talking.read_exact(&mut buf).await.expect("still answered");
        task.abort();
    }
}
