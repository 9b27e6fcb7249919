//! The simulated network: per directed link, messages are dropped, delayed, duplicated, or cut
//! by a partition. Delivery on one link is FIFO (as over one TCP connection), except duplicates,
//! which may arrive late and out of order; the core must drop them.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::Rng;
use rookery_server::zab::PeerId;

/// The behaviour of one directed link.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LinkFaults {
    /// Probability that a message is lost.
    pub(crate) drop: f64,
    /// Probability that a message is also delivered a second time, later.
    pub(crate) duplicate: f64,
    /// Delay range, in simulated time units.
    pub(crate) delay: (u64, u64),
}

impl LinkFaults {
    /// A healthy link.
    pub(crate) const HEALTHY: LinkFaults = LinkFaults {
        drop: 0.0,
        duplicate: 0.0,
        delay: (1, 4),
    };
}

#[derive(Debug, Clone, Copy)]
struct Link {
    faults: LinkFaults,
    /// Messages sent now are lost; messages in flight are lost on arrival.
    cut: bool,
    /// Delivery time of the last message sent, for FIFO order.
    last_delivery: u64,
}

/// A delivery the network decided on: (time, bytes, is this a duplicate).
pub(crate) type Delivery = (u64, Vec<u8>, bool);

pub(crate) struct Network {
    links: BTreeMap<(PeerId, PeerId), Link>,
    pub(crate) sent: u64,
    pub(crate) dropped: u64,
    pub(crate) duplicated: u64,
}

impl Network {
    pub(crate) fn new(ids: &[PeerId]) -> Network {
        let mut links = BTreeMap::new();
        for &a in ids {
            for &b in ids {
                if a != b {
                    links.insert(
                        (a, b),
                        Link {
                            faults: LinkFaults::HEALTHY,
                            cut: false,
                            last_delivery: 0,
                        },
                    );
                }
            }
        }
        Network {
            links,
            sent: 0,
            dropped: 0,
            duplicated: 0,
        }
    }

    /// Decides what becomes of a message sent now on `from → to`.
    pub(crate) fn send(
        &mut self,
        rng: &mut StdRng,
        now: u64,
        from: PeerId,
        to: PeerId,
        bytes: Vec<u8>,
    ) -> Vec<Delivery> {
        self.sent += 1;
        let link = self
            .links
            .get_mut(&(from, to))
            .expect("a link between members");
        if link.cut || rng.gen_bool(link.faults.drop) {
            self.dropped += 1;
            return Vec::new();
        }
        let (lo, hi) = link.faults.delay;
        let at = (now + rng.gen_range(lo..=hi)).max(link.last_delivery);
        link.last_delivery = at;
        let mut out = Vec::with_capacity(1);
        if rng.gen_bool(link.faults.duplicate) {
            self.duplicated += 1;
            out.push((at + rng.gen_range(0..=2 * hi), bytes.clone(), true));
        }
        out.push((at, bytes, false));
        out
    }

    /// Whether a message arriving now on `from → to` gets through.
    pub(crate) fn arrives(&mut self, from: PeerId, to: PeerId) -> bool {
        let cut = self.links[&(from, to)].cut;
        if cut {
            self.dropped += 1;
        }
        !cut
    }

    pub(crate) fn set_faults(&mut self, from: PeerId, to: PeerId, faults: LinkFaults) {
        if let Some(l) = self.links.get_mut(&(from, to)) {
            l.faults = faults;
        }
    }

    pub(crate) fn cut(&mut self, from: PeerId, to: PeerId, cut: bool) {
        if let Some(l) = self.links.get_mut(&(from, to)) {
            l.cut = cut;
        }
    }

    /// Removes every partition and fault.
    pub(crate) fn heal(&mut self) {
        for l in self.links.values_mut() {
            l.cut = false;
            l.faults = LinkFaults::HEALTHY;
        }
    }

    pub(crate) fn describe_cuts(&self) -> String {
        let cuts: Vec<String> = self
            .links
            .iter()
            .filter(|(_, l)| l.cut)
            .map(|((a, b), _)| format!("{a}->{b}"))
            .collect();
        if cuts.is_empty() {
            "none".into()
        } else {
            cuts.join(" ")
        }
    }
}
