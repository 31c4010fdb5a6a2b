//! When a connection has been slow or idle for too long.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for a request's head since then (the connection opened, or a request's first
    /// byte arrived).
    Head(Instant),
    /// This many requests are being answered.
    Busy(usize),
    /// No request since then.
    Idle(Instant),
}

/// What a connection is doing, and since when.
pub struct ConnectionClock {
    phase: Mutex<Phase>,
    changed: Notify,
}

impl ConnectionClock {
    pub fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Head(Instant::now())),
            changed: Notify::new(),
        }
    }

    fn set(&self, change: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap();
        let next = change(*phase);
        if next != *phase {
            *phase = next;
            self.changed.notify_waiters();
        }
    }

    fn bytes_arrived(&self) {
        self.set(|phase| match phase {
            Phase::Idle(_) => Phase::Head(Instant::now()),
            other => other,
        });
    }

    fn request_started(&self) {
        self.set(|phase| match phase {
            Phase::Busy(n) => Phase::Busy(n + 1),
            _ => Phase::Busy(1),
        });
    }

    fn request_finished(&self) {
        self.set(|phase| match phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        });
    }

    fn deadline(&self, header_timeout: Duration, idle_timeout: Duration) -> Option<Instant> {
        match *self.phase.lock().unwrap() {
            Phase::Head(since) => Some(since + header_timeout),
            Phase::Idle(since) => Some(since + idle_timeout),
            Phase::Busy(_) => None,
        }
    }

    /// Completes when the connection has waited for a request's head longer than
    /// `header_timeout`, or has had no request for longer than `idle_timeout`.
    pub async fn expired(&self, header_timeout: Duration, idle_timeout: Duration) {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            // Registered before the phase is read, so no change slips between the two.
            changed.as_mut().enable();
            match self.deadline(header_timeout, idle_timeout) {
                Some(deadline) if deadline <= Instant::now() => return,
                Some(deadline) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {}
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// Marks its connection busy from a request's start until it is answered (or abandoned).
pub struct BusyGuard(Arc<ConnectionClock>);

impl BusyGuard {
    pub fn new(clock: Arc<ConnectionClock>) -> Self {
        clock.request_started();
        Self(clock)
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// The connection's socket, telling its clock when bytes arrive.
pub struct WatchedIo {
    stream: TcpStream,
    clock: Arc<ConnectionClock>,
}

impl WatchedIo {
    pub fn new(stream: TcpStream, clock: Arc<ConnectionClock>) -> Self {
        Self { stream, clock }
    }
}

impl AsyncRead for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
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

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(75);

    fn deadline(clock: &ConnectionClock) -> Option<Instant> {
        clock.deadline(HEAD, IDLE)
    }

    #[test]
    fn a_new_connection_has_the_header_timeout_to_send_its_head() {
        let opened = Instant::now();
        let clock = ConnectionClock::new();
        let due = deadline(&clock).unwrap();
        assert!(due >= opened + HEAD && due <= Instant::now() + HEAD);
    }

    #[test]
    fn a_busy_connection_has_no_deadline_and_idles_after_its_answers() {
        let clock = Arc::new(ConnectionClock::new());
        let first = BusyGuard::new(clock.clone());
        let second = BusyGuard::new(clock.clone());
        clock.bytes_arrived();
        assert_eq!(deadline(&clock), None, "long answers keep their connection");
        drop(first);
        assert_eq!(deadline(&clock), None, "one request is still answered");
        let answered = Instant::now();
        drop(second);
        let due = deadline(&clock).unwrap();
        assert!(due >= answered + IDLE && due <= Instant::now() + IDLE);
    }

    #[test]
    fn the_first_byte_of_the_next_request_starts_the_header_timeout() {
        let clock = Arc::new(ConnectionClock::new());
        drop(BusyGuard::new(clock.clone()));
        let arrived = Instant::now();
        clock.bytes_arrived();
        let due = deadline(&clock).unwrap();
        assert!(due >= arrived + HEAD && due <= Instant::now() + HEAD);
        assert!(due < arrived + IDLE);
    }

    #[tokio::test]
    async fn an_expired_deadline_completes_at_once() {
        let clock = ConnectionClock::new();
        clock.expired(Duration::ZERO, IDLE).await;
    }
}
