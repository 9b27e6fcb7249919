//! [`SessionEvents`]: the lossless stream of connection and session events.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::mpsc;

use crate::types::SessionEvent;

/// The stream of [`SessionEvent`]s from [`crate::Client::session_events`].
///
/// # Cancellation safety
/// [`SessionEvents::next`] is cancellation safe: no event is lost if it is dropped unfinished.
#[derive(Debug)]
#[must_use = "a stream does nothing unless read"]
pub struct SessionEvents {
    rx: mpsc::Receiver<SessionEvent>,
}

impl SessionEvents {
    pub(crate) fn new(rx: mpsc::Receiver<SessionEvent>) -> Self {
        SessionEvents { rx }
    }

    /// The next event, or `None` once the session task has finished.
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn next(&mut self) -> Option<SessionEvent> {
        self.rx.recv().await
    }

    /// The next event if one is waiting, without waiting for one.
    pub fn try_next(&mut self) -> Option<SessionEvent> {
        self.rx.try_recv().ok()
    }
}

impl Stream for SessionEvents {
    type Item = SessionEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SessionEvent>> {
        self.rx.poll_recv(cx)
    }
}
