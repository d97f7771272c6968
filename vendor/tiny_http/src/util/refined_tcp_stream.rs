use std::io::Result as IoResult;
use std::io::{Read, Write};
use std::io::{Error as IoError, ErrorKind};
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::connection::Connection;
#[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
use crate::ssl::SslStream;

pub(crate) enum Stream {
    Http(Connection),
    #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
    Https(SslStream),
}

impl From<Connection> for Stream {
    fn from(tcp_stream: Connection) -> Self {
        Stream::Http(tcp_stream)
    }
}

impl Stream {
    fn secure(&self) -> bool {
        match self {
            Stream::Http(_) => false,
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => true,
        }
    }

    fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.peer_addr(),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.peer_addr(),
        }
    }

    fn shutdown(&mut self, how: Shutdown) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.shutdown(how),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.shutdown(how),
        }
    }

    // kci-lite patch: `clone` without the panic.
    fn try_clone(&self) -> IoResult<Stream> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.try_clone().map(Stream::Http),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => Ok(Stream::Https(ssl_stream.clone())),
        }
    }

    // kci-lite patch: see `RefinedTcpStream::linger_close`.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.set_read_timeout(timeout),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => Err(IoError::new(ErrorKind::Unsupported, "no read timeout")),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.read(buf),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.write(buf),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.write(buf),
        }
    }

    fn flush(&mut self) -> IoResult<()> {
        match self {
            Stream::Http(tcp_stream) => tcp_stream.flush(),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(ssl_stream) => ssl_stream.flush(),
        }
    }
}

pub struct RefinedTcpStream {
    stream: Stream,
    close_read: bool,
    close_write: bool,
    // kci-lite patch: the socket's write timeout, see `write`.
    write_timeout: Option<Duration>,
    // kci-lite patch: when set, reads end at this instant (all handles of
    // the socket share it), see `read`.
    read_deadline: Arc<Mutex<Option<Instant>>>,
    // kci-lite patch: set when the connection is taken over (all handles
    // of the socket share it): dropping a handle then shuts nothing down,
    // the new owner does.
    kept_open: Arc<AtomicBool>,
}

impl RefinedTcpStream {
    // kci-lite patch: fails (instead of panicking) when the socket cannot
    // be duplicated, e.g. when the process is out of file descriptors.
    pub(crate) fn new<S>(stream: S) -> IoResult<(RefinedTcpStream, RefinedTcpStream)>
    where
        S: Into<Stream>,
    {
        let stream: Stream = stream.into();
        let write_timeout = match &stream {
            Stream::Http(connection) => connection.write_timeout().ok().flatten(),
            #[cfg(any(feature = "ssl-openssl", feature = "ssl-rustls"))]
            Stream::Https(_) => None,
        };

        let (read, write) = (stream.try_clone()?, stream);
        let read_deadline = Arc::new(Mutex::new(None));
        let kept_open = Arc::new(AtomicBool::new(false));

        let read = RefinedTcpStream {
            stream: read,
            close_read: true,
            close_write: false,
            write_timeout,
            read_deadline: Arc::clone(&read_deadline),
            kept_open: Arc::clone(&kept_open),
        };

        let write = RefinedTcpStream {
            stream: write,
            close_read: false,
            close_write: true,
            write_timeout,
            read_deadline,
            kept_open,
        };

        Ok((read, write))
    }

    /// Returns true if this struct wraps around a secure connection.
    #[inline]
    pub(crate) fn secure(&self) -> bool {
        self.stream.secure()
    }

    pub(crate) fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        self.stream.peer_addr()
    }

    /// kci-lite patch: one more handle on this socket, which shuts nothing
    /// down when dropped; for [`RefinedTcpStream::linger_close`].
    pub(crate) fn try_clone_handle(&self) -> IoResult<RefinedTcpStream> {
        Ok(RefinedTcpStream {
            stream: self.stream.try_clone()?,
            close_read: false,
            close_write: false,
            write_timeout: self.write_timeout,
            read_deadline: Arc::clone(&self.read_deadline),
            kept_open: Arc::clone(&self.kept_open),
        })
    }

    /// kci-lite patch: from now on no handle of this socket shuts it down
    /// when dropped (the connection is being taken over; its reader goes
    /// away with the connection's thread, and must not end the reading).
    pub(crate) fn keep_open(&self) {
        self.kept_open.store(true, Ordering::SeqCst);
    }

    /// kci-lite patch: a plain `TcpStream` on this socket (a new
    /// descriptor), for a connection taken over by its last request.
    pub(crate) fn try_clone_tcp(&self) -> IoResult<std::net::TcpStream> {
        match &self.stream {
            Stream::Http(Connection::Tcp(stream)) => stream.try_clone(),
            #[allow(unreachable_patterns)]
            _ => Err(IoError::new(ErrorKind::Unsupported, "not a plain TCP connection")),
        }
    }

    /// kci-lite patch: every read of this socket (all handles) fails with
    /// `TimedOut` once `deadline` has passed, however the bytes before it
    /// trickle in; `None` lifts it (the read timeout is then left as the
    /// last read set it).
    pub(crate) fn set_read_deadline(&self, deadline: Option<Instant>) {
        *self.read_deadline.lock().unwrap_or_else(|p| p.into_inner()) = deadline;
    }

    /// kci-lite patch: the bound on one read of this socket (all handles).
    pub(crate) fn set_read_timeout(&self, timeout: Option<Duration>) -> IoResult<()> {
        self.stream.set_read_timeout(timeout)
    }

    /// kci-lite patch: ends a connection after an answer that must be the
    /// last one (already flushed). Sends FIN, so the client sees the answer
    /// end, then reads and drops what the client still sends, until it
    /// closes or `linger` passes. A socket closed with unread data resets
    /// the connection, and a reset can destroy the answer before the client
    /// read it. Memory stays bounded whatever the client sends.
    pub(crate) fn linger_close(&mut self, linger: Duration) {
        let _ = self.stream.shutdown(Shutdown::Write);
        let deadline = Instant::now() + linger;
        let mut scratch = [0u8; 8 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.stream.set_read_timeout(Some(left)).is_err() {
                return;
            }
            match self.stream.read(&mut scratch) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

impl Drop for RefinedTcpStream {
    fn drop(&mut self) {
        if self.kept_open.load(Ordering::SeqCst) {
            return;
        }
        if self.close_read {
            self.stream.shutdown(Shutdown::Read).ok();
        }

        if self.close_write {
            self.stream.shutdown(Shutdown::Write).ok();
        }
    }
}

impl Read for RefinedTcpStream {
    // kci-lite patch: under a read deadline, each read may block only for
    // what is left of it.
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        let deadline = *self.read_deadline.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(IoError::new(ErrorKind::TimedOut, "read deadline passed"));
            }
            self.stream.set_read_timeout(Some(left))?;
        }
        self.stream.read(buf)
    }
}

impl Write for RefinedTcpStream {
    // kci-lite patch: a write that blocked for the whole write timeout means
    // the client stopped reading (the kernel may still take a few bytes now
    // and then, so the timeout alone rarely fails a write). The response is
    // then half sent and nothing more can be said on this connection: close
    // it both ways, which also ends the thread reading its next request.
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        let started = Instant::now();
        let written = self.stream.write(buf);
        let stalled = match &written {
            Err(err) => matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            Ok(_) => self.write_timeout.is_some_and(|t| started.elapsed() >= t),
        };
        if stalled {
            let _ = self.stream.shutdown(Shutdown::Both);
            return Err(IoError::new(ErrorKind::TimedOut, "client stopped reading"));
        }
        written
    }

    fn flush(&mut self) -> IoResult<()> {
        self.stream.flush()
    }
}
