//! Accepting connections without letting a stranger pick our limits: at most a set number of
//! connections open at once (the rest wait in the kernel's backlog, then time out on their
//! side), and an accept that fails — most often a full file-descriptor table — is retried after
//! a pause that doubles up to [`MAX_BACKOFF`], never in a busy loop and never ending the server.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The first pause after a failed accept.
pub const MIN_BACKOFF: Duration = Duration::from_millis(5);
/// The longest pause between two accepts that fail.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// The listen backlog asked of the kernel (which caps it at `net.core.somaxconn`): room for a
/// fleet of proxies that reconnect at once after a restart.
pub const BACKLOG: u32 = 4096;

/// Binds `addr` with [`BACKLOG`].
pub fn bind(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// A listener that holds one permit per open connection.
pub struct Acceptor {
    listener: TcpListener,
    permits: Arc<Semaphore>,
    backoff: Duration,
    /// For the log line a failed accept writes (once per pause, so a storm is a few lines).
    what: &'static str,
}

impl Acceptor {
    pub fn new(listener: TcpListener, max_connections: usize, what: &'static str) -> Acceptor {
        Acceptor {
            listener,
            permits: Arc::new(Semaphore::new(max_connections.max(1))),
            backoff: MIN_BACKOFF,
            what,
        }
    }

    /// The next connection, once one of the limited places is free.
    pub async fn accept(&mut self) -> Limited {
        // The semaphore is never closed: acquiring only waits.
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            unreachable!("the semaphore is never closed")
        };
        loop {
            match self.listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    self.backoff = MIN_BACKOFF;
                    return Limited {
                        stream,
                        _permit: permit,
                    };
                }
                Err(e) => {
                    if self.backoff >= MAX_BACKOFF / 2 || self.backoff == MIN_BACKOFF {
                        eprintln!(
                            "meshmetrics: {}: cannot accept ({e}); retrying in {} ms",
                            self.what,
                            self.backoff.as_millis()
                        );
                    }
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// The connections as a stream, for tonic's `serve_with_incoming`.
    pub fn into_stream(mut self) -> tokio_stream::wrappers::ReceiverStream<io::Result<Limited>> {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                let c = self.accept().await;
                if tx.send(Ok(c)).await.is_err() {
                    return;
                }
            }
        });
        tokio_stream::wrappers::ReceiverStream::new(rx)
    }
}

/// A connection and its place among the limited ones, given back when it closes.
pub struct Limited {
    pub stream: TcpStream,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
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

impl tonic::transport::server::Connected for Limited {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}
