//! Bandwidth caps on data streams: a thin async wrapper around the pure
//! [`TokenBucket`] of ferry-proto. It reads the clock and sleeps for what
//! the bucket says; the arithmetic is there, tested without time.
//!
//! A [`Limiter`] is one cap shared by every stream that holds it: the
//! task's (`--bwlimit`, made per attempt at the source) and the
//! endpoint's (`bwlimit` in `endpoint.toml`, one for the daemon, its rate
//! changed in place on SIGHUP). A [`Throttled`] stream reserves a slice
//! (about a tenth of a second's worth) from each of its limiters before
//! it hands bytes on, and sleeps for the longest wait: no busy-waiting,
//! and the debt the bucket keeps makes every stream queue fairly behind
//! what others reserved.
//!
//! Where: at the source, where data is written to the socket, under the
//! writer's buffer (task and endpoint caps); at the destination, where
//! data is read from the socket (the endpoint's cap only). Pacing the
//! sender keeps the wait in the sender's own queue: no data sits in
//! socket buffers or in flight, the peer hears a steady trickle (so the
//! idle deadline keeps its meaning), and the bytes counted are the bytes
//! sent. A receiving endpoint's own cap can only be kept by reading
//! slower, which TCP's flow control turns into a slower sender.

use ferry_proto::rate::TokenBucket;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// One cap, shared; no rate: no cap.
#[derive(Debug, Default)]
pub struct Limiter {
    bucket: Mutex<Option<TokenBucket>>,
}

impl Limiter {
    pub fn new(rate: Option<u64>) -> Self {
        let limiter = Self::default();
        limiter.set_rate(rate);
        limiter
    }

    /// A new rate from now on, for every stream holding this limiter.
    pub fn set_rate(&self, rate: Option<u64>) {
        let now = now();
        let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        *bucket = match (bucket.take(), rate) {
            (_, None) => None,
            (Some(mut b), Some(rate)) => {
                b.set_rate(rate, now);
                Some(b)
            }
            (None, Some(rate)) => Some(TokenBucket::new(rate, now)),
        };
    }

    pub fn rate(&self) -> Option<u64> {
        let bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        bucket.as_ref().map(TokenBucket::rate)
    }

    /// The most to reserve at once; `None` without a cap.
    fn slice(&self) -> Option<u64> {
        let bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        bucket.as_ref().map(TokenBucket::slice)
    }

    fn reserve(&self, bytes: u64) -> Duration {
        let mut bucket = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        match bucket.as_mut() {
            Some(b) => b.reserve(bytes, now()),
            None => Duration::ZERO,
        }
    }
}

fn now() -> std::time::Instant {
    // tokio's clock, so a test with paused time sees the sleeps it takes.
    tokio::time::Instant::now().into_std()
}

/// A stream whose bytes pass its limiters' caps, either way.
#[derive(Debug)]
pub struct Throttled<T> {
    inner: T,
    limiters: Vec<Arc<Limiter>>,
    /// Bytes reserved and not yet passed on.
    paid: u64,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<T> Throttled<T> {
    pub fn new(inner: T, limiters: Vec<Arc<Limiter>>) -> Self {
        Self {
            inner,
            limiters,
            paid: 0,
            sleep: None,
        }
    }

    /// How many of `wanted` bytes may pass now (`None`: any number, no
    /// cap in force), or `Pending` while a reservation's wait runs.
    fn poll_grant(&mut self, cx: &mut Context<'_>, wanted: usize) -> Poll<Option<usize>> {
        loop {
            if let Some(sleep) = self.sleep.as_mut() {
                ready!(sleep.as_mut().poll(cx));
                self.sleep = None;
            }
            if self.paid > 0 {
                return Poll::Ready(Some(wanted.min(self.paid as usize)));
            }
            let Some(slice) = self.limiters.iter().filter_map(|l| l.slice()).min() else {
                return Poll::Ready(None);
            };
            let grant = (wanted as u64).clamp(1, slice);
            let wait = self
                .limiters
                .iter()
                .map(|l| l.reserve(grant))
                .max()
                .unwrap_or_default();
            self.paid = grant;
            if !wait.is_zero() {
                self.sleep = Some(Box::pin(tokio::time::sleep(wait)));
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Throttled<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        }
        match ready!(this.poll_grant(cx, buf.len())) {
            None => Pin::new(&mut this.inner).poll_write(cx, buf),
            Some(n) => {
                let written = ready!(Pin::new(&mut this.inner).poll_write(cx, &buf[..n]))?;
                this.paid = this.paid.saturating_sub(written as u64);
                Poll::Ready(Ok(written))
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Throttled<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        match ready!(this.poll_grant(cx, buf.remaining())) {
            None => Pin::new(&mut this.inner).poll_read(cx, buf),
            Some(n) => {
                let mut part = ReadBuf::new(buf.initialize_unfilled_to(n));
                ready!(Pin::new(&mut this.inner).poll_read(cx, &mut part))?;
                let read = part.filled().len();
                buf.advance(read);
                this.paid = this.paid.saturating_sub(read as u64);
                Poll::Ready(Ok(()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// With paused time, the clock moves only by the sleeps taken: what a
    /// capped writer takes for 1 MB at 100 KB/s is what the bucket says,
    /// less its burst, and nothing spins.
    #[tokio::test(start_paused = true)]
    async fn a_capped_writer_sleeps_for_its_bytes() {
        let limiter = Arc::new(Limiter::new(Some(100_000)));
        let (mut far, near) = tokio::io::duplex(64 * 1024);
        let reader = tokio::spawn(async move {
            let mut all = Vec::new();
            far.read_to_end(&mut all).await.map(|_| all.len())
        });
        let start = tokio::time::Instant::now();
        let mut w = Throttled::new(near, vec![limiter.clone()]);
        w.write_all(&vec![7u8; 1_000_000]).await.unwrap();
        w.shutdown().await.unwrap();
        drop(w);
        assert_eq!(reader.await.unwrap().unwrap(), 1_000_000);
        let took = start.elapsed();
        // 1 MB at 100 KB/s less the 16 KiB burst: about 9.84 s.
        assert!(
            took >= Duration::from_millis(9_800) && took <= Duration::from_millis(10_100),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn streams_sharing_a_cap_share_its_rate() {
        let limiter = Arc::new(Limiter::new(Some(200_000)));
        let start = tokio::time::Instant::now();
        let mut writers = Vec::new();
        for _ in 0..4 {
            let limiter = limiter.clone();
            writers.push(tokio::spawn(async move {
                let (mut far, near) = tokio::io::duplex(1 << 20);
                let mut w = Throttled::new(near, vec![limiter]);
                w.write_all(&vec![1u8; 500_000]).await.unwrap();
                drop(w);
                let mut sink = Vec::new();
                far.read_to_end(&mut sink).await.unwrap();
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
        // 2 MB at 200 KB/s together: about 10 s, not 2.5.
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(9_800), "{took:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_capped_reader_reads_at_the_cap_and_an_uncapped_one_at_once() {
        let (mut far, near) = tokio::io::duplex(1 << 20);
        tokio::spawn(async move {
            let _ = far.write_all(&vec![3u8; 300_000]).await;
        });
        let limiter = Arc::new(Limiter::new(Some(100_000)));
        let start = tokio::time::Instant::now();
        let mut r = Throttled::new(near, vec![limiter.clone()]);
        let mut all = Vec::new();
        r.read_to_end(&mut all).await.unwrap();
        assert_eq!(all.len(), 300_000);
        assert!(start.elapsed() >= Duration::from_millis(2_800));
        // Lifted (as a SIGHUP may): no wait at all.
        limiter.set_rate(None);
        assert_eq!(limiter.rate(), None);
        let (mut far, near) = tokio::io::duplex(1 << 20);
        tokio::spawn(async move {
            let _ = far.write_all(&vec![3u8; 300_000]).await;
        });
        let start = tokio::time::Instant::now();
        let mut r = Throttled::new(near, vec![limiter]);
        let mut all = Vec::new();
        r.read_to_end(&mut all).await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
