//! Accepted connections that a handler can abort, so the mock can drop a
//! connection before any response byte is written (`x-mock-reset-after` on a
//! non-streaming reply).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A TCP listener whose connections each carry an abort switch.
pub struct AbortableListener(pub TcpListener);

/// Per-connection handle, reachable from requests as `ConnectInfo<ConnHandle>`.
#[derive(Clone, Debug, Default)]
pub struct ConnHandle {
    aborted: Arc<AtomicBool>,
}

impl ConnHandle {
    /// Makes every later read or write on the connection fail, so hyper drops
    /// it; the socket is then closed with a TCP RST (zero linger).
    pub fn abort(&self) {
        self.aborted.store(true, Ordering::SeqCst);
    }
}

/// The accepted socket, failing all I/O once its [`ConnHandle`] is aborted.
pub struct AbortableStream {
    inner: TcpStream,
    aborted: Arc<AtomicBool>,
}

impl AbortableStream {
    fn check(&self) -> io::Result<()> {
        if self.aborted.load(Ordering::SeqCst) {
            // Best effort: a failure only means a FIN instead of a RST.
            let _ = self.inner.set_zero_linger();
            Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "connection aborted by x-mock-reset-after",
            ))
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for AbortableStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for AbortableStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = this.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = this.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl Listener for AbortableListener {
    type Io = AbortableStream;
    type Addr = (SocketAddr, ConnHandle);

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((inner, remote)) => {
                    let _ = inner.set_nodelay(true);
                    let handle = ConnHandle::default();
                    let stream = AbortableStream {
                        inner,
                        aborted: Arc::clone(&handle.aborted),
                    };
                    return (stream, (remote, handle));
                }
                // E.g. out of file descriptors: back off instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok((self.0.local_addr()?, ConnHandle::default()))
    }
}

impl Connected<IncomingStream<'_, AbortableListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, AbortableListener>) -> Self {
        stream.remote_addr().1.clone()
    }
}
