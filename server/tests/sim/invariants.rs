//! Properties of the whole ensemble, checked by the simulator after every step. Each checker is
//! its own type; the simulator feeds each the events it needs.
//!
//! - [`SingleLeaderPerEpoch`]: at most one server becomes the established leader of an epoch.
//! - [`CommonHistory`]: every server's applied (committed) history is a prefix of one common
//!   history, whose zxids strictly increase; a snapshot install or a restart never moves a
//!   server's applied state off that history or backwards.
//! - [`ClientOrder`]: each client's writes are committed in the order it issued them.
//! - [`Acknowledged`]: a write the leader reported committed is in the common history, and is
//!   still there, at the same position, in the final history of every server.

use std::collections::BTreeMap;

use rookery_server::zab::{Entry, PeerId, Zxid};

/// At most one established leader per epoch.
#[derive(Default)]
pub(crate) struct SingleLeaderPerEpoch {
    leaders: BTreeMap<u32, PeerId>,
}

impl SingleLeaderPerEpoch {
    pub(crate) fn on_leading(&mut self, id: PeerId, epoch: u32) -> Result<(), String> {
        match self.leaders.insert(epoch, id) {
            Some(other) if other != id => Err(format!(
                "two established leaders in epoch {epoch}: {other} and {id}"
            )),
            _ => Ok(()),
        }
    }

    pub(crate) fn epochs(&self) -> usize {
        self.leaders.len()
    }
}

/// The one history every server's applied state is a prefix of.
#[derive(Default)]
pub(crate) struct CommonHistory {
    pub(crate) history: Vec<Entry>,
}

impl CommonHistory {
    /// `entries` were committed on `id`, whose applied history had `applied_len` entries.
    /// Returns the entries that extended the common history.
    pub(crate) fn on_commit(
        &mut self,
        id: PeerId,
        applied_len: usize,
        entries: &[Entry],
    ) -> Result<Vec<Entry>, String> {
        let mut new = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let at = applied_len + i;
            match self.history.get(at) {
                Some(h) if h == e => {}
                Some(h) => {
                    return Err(format!(
                        "server {id} committed {} ({} bytes) at position {at}, where the history has {} ({} bytes)",
                        e.zxid,
                        e.payload.len(),
                        h.zxid,
                        h.payload.len()
                    ))
                }
                None => {
                    debug_assert_eq!(at, self.history.len());
                    if let Some(last) = self.history.last() {
                        if e.zxid <= last.zxid {
                            return Err(format!(
                                "zxids do not increase: {} after {}",
                                e.zxid, last.zxid
                            ));
                        }
                    }
                    self.history.push(e.clone());
                    new.push(e.clone());
                }
            }
        }
        Ok(new)
    }

    /// `id`'s applied state became `image` (a snapshot install or a restart); before it was
    /// `before` entries long (`None` after a restart, when nothing was applied yet).
    pub(crate) fn on_image(
        &self,
        id: PeerId,
        image: &[Entry],
        before: Option<usize>,
    ) -> Result<(), String> {
        if image.len() > self.history.len() || self.history[..image.len()] != *image {
            let at = image
                .iter()
                .zip(&self.history)
                .position(|(a, b)| a != b)
                .unwrap_or(self.history.len());
            return Err(format!(
                "server {id}'s image of {} entries leaves the common history at position {at}",
                image.len()
            ));
        }
        if let Some(before) = before {
            if image.len() < before {
                return Err(format!(
                    "server {id}'s applied state went back from {before} to {} entries",
                    image.len()
                ));
            }
        }
        Ok(())
    }
}

/// A client write's identity, from its payload.
pub(crate) fn client_of(payload: &[u8]) -> Option<(u32, u64)> {
    if payload.len() < 12 {
        return None;
    }
    Some((
        u32::from_be_bytes(payload[..4].try_into().unwrap()),
        u64::from_be_bytes(payload[4..12].try_into().unwrap()),
    ))
}

/// Each client's writes commit in the order it issued them (its sequence numbers increase
/// along the history).
#[derive(Default)]
pub(crate) struct ClientOrder {
    last: BTreeMap<u32, u64>,
}

impl ClientOrder {
    pub(crate) fn on_new_history(&mut self, entries: &[Entry]) -> Result<(), String> {
        for e in entries {
            let Some((client, seq)) = client_of(&e.payload) else {
                return Err(format!("entry {} carries no client id", e.zxid));
            };
            if let Some(prev) = self.last.insert(client, seq) {
                if seq <= prev {
                    return Err(format!(
                        "client {client}'s write {seq} committed at {} after its write {prev}",
                        e.zxid
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Acknowledged writes are never lost.
#[derive(Default)]
pub(crate) struct Acknowledged {
    /// Position in the history and the entry.
    pub(crate) acked: BTreeMap<Zxid, (usize, Entry)>,
}

impl Acknowledged {
    /// `entry` was acknowledged, committed at position `pos`.
    pub(crate) fn on_ack(
        &mut self,
        history: &CommonHistory,
        pos: usize,
        entry: &Entry,
    ) -> Result<(), String> {
        if history.history.get(pos) != Some(entry) {
            return Err(format!(
                "write {} acknowledged but not in the committed history at position {pos}",
                entry.zxid
            ));
        }
        self.acked.insert(entry.zxid, (pos, entry.clone()));
        Ok(())
    }

    /// Every acknowledged write is in `final_history` (a server's applied state at the end).
    pub(crate) fn check_final(&self, id: PeerId, final_history: &[Entry]) -> Result<(), String> {
        for (pos, e) in self.acked.values() {
            if final_history.get(*pos) != Some(e) {
                return Err(format!(
                    "acknowledged write {} (position {pos}) is missing from server {id}'s final history of {} entries",
                    e.zxid,
                    final_history.len()
                ));
            }
        }
        Ok(())
    }
}
