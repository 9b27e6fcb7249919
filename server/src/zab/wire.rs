//! The peer wire codec: pure functions from [`Message`] to bytes and back.
//!
//! One message is one frame; the runtime adds the length prefix when it writes frames to a TCP
//! stream. All integers are big-endian. Byte strings are `len:u32` then the bytes.
//!
//! ```text
//! notification   type:u8 = 100 | state:u8 | leader:u64 | zxid:u64 | peer_epoch:u32
//!                | election_epoch:u64
//! peer packet    type:u8 (ZooKeeper's packet type) | session:u64 | epoch:u32 | seq:u64 | body:
//!   PROPOSAL 2   zxid:u64 payload:bytes         ACK 3         zxid:u64
//!   COMMIT 4     zxid:u64                       PING 5        round:u64
//!   INFORM 8     zxid:u64 payload:bytes         NEWLEADER 10  epoch:u32
//!   FOLLOWERINFO 11  accepted_epoch:u32         UPTODATE 12   (empty)
//!   DIFF 13      after:u64                      TRUNC 14      after:u64
//!   SNAP 15      zxid:u64 snapshot:bytes        OBSERVERINFO 16  accepted_epoch:u32
//!   LEADERINFO 17  epoch:u32
//!   ACKEPOCH 18  fresh:u8 current_epoch:u32 last_zxid:u64 committed_zxid:u64
//!                count:u32 epoch_end:u64 * count
//! ```
//!
//! Decoding never panics and never allocates more than the input's length: every length and count
//! is checked against the bytes that remain before anything is reserved, and trailing bytes are an
//! error. It checks form, not meaning; the state machine judges whether a packet makes sense.

use bytes::Bytes;

use super::error::DecodeError;
use super::message::{AckEpoch, Entry, Message, Notification, Packet, ServerState, Vote};
use super::zxid::Zxid;

/// The largest proposal payload, the same as the largest log record: a follower must be able to
/// log whatever it is sent.
pub const MAX_PAYLOAD_LEN: usize = 64 << 20;

const T_NOTIFICATION: u8 = 100;
const T_PROPOSAL: u8 = 2;
const T_ACK: u8 = 3;
const T_COMMIT: u8 = 4;
const T_PING: u8 = 5;
const T_INFORM: u8 = 8;
const T_NEWLEADER: u8 = 10;
const T_FOLLOWERINFO: u8 = 11;
const T_UPTODATE: u8 = 12;
const T_DIFF: u8 = 13;
const T_TRUNC: u8 = 14;
const T_SNAP: u8 = 15;
const T_OBSERVERINFO: u8 = 16;
const T_LEADERINFO: u8 = 17;
const T_ACKEPOCH: u8 = 18;
const PACKET_TYPES: [u8; 14] = [
    T_PROPOSAL,
    T_ACK,
    T_COMMIT,
    T_PING,
    T_INFORM,
    T_NEWLEADER,
    T_FOLLOWERINFO,
    T_UPTODATE,
    T_DIFF,
    T_TRUNC,
    T_SNAP,
    T_OBSERVERINFO,
    T_LEADERINFO,
    T_ACKEPOCH,
];

/// Encodes a message.
pub fn encode(msg: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(msg, &mut out);
    out
}

/// Appends the encoding of `msg` to `out`.
///
/// # Panics
/// If a byte string is longer than `u32::MAX` bytes (a snapshot of 4 GiB or more): the frame could
/// not say its length.
pub fn encode_into(msg: &Message, out: &mut Vec<u8>) {
    match msg {
        Message::Notification(n) => {
            out.push(T_NOTIFICATION);
            out.push(state_code(n.state));
            put_u64(out, n.vote.leader);
            put_u64(out, n.vote.zxid.raw());
            put_u32(out, n.vote.peer_epoch);
            put_u64(out, n.election_epoch);
        }
        Message::Peer {
            session,
            epoch,
            seq,
            packet,
        } => {
            out.push(packet_type(packet));
            put_u64(out, *session);
            put_u32(out, *epoch);
            put_u64(out, *seq);
            encode_packet(packet, out);
        }
    }
}

fn encode_packet(packet: &Packet, out: &mut Vec<u8>) {
    match packet {
        Packet::FollowerInfo { accepted_epoch } | Packet::ObserverInfo { accepted_epoch } => {
            put_u32(out, *accepted_epoch);
        }
        Packet::LeaderInfo { epoch } | Packet::NewLeader { epoch } => put_u32(out, *epoch),
        Packet::AckEpoch(a) => {
            out.push(u8::from(a.fresh));
            put_u32(out, a.current_epoch);
            put_u64(out, a.last_zxid.raw());
            put_u64(out, a.committed_zxid.raw());
            put_u32(out, count_u32(a.epoch_ends.len()));
            for z in &a.epoch_ends {
                put_u64(out, z.raw());
            }
        }
        Packet::Diff { after } | Packet::Trunc { after } => put_u64(out, after.raw()),
        Packet::Commit { zxid } | Packet::Ack { zxid } => put_u64(out, zxid.raw()),
        Packet::Snap { zxid, snapshot } => {
            put_u64(out, zxid.raw());
            put_bytes(out, snapshot);
        }
        Packet::Proposal(e) | Packet::Inform(e) => {
            put_u64(out, e.zxid.raw());
            put_bytes(out, &e.payload);
        }
        Packet::Ping { round } => put_u64(out, *round),
        Packet::UpToDate => {}
    }
}

fn packet_type(packet: &Packet) -> u8 {
    match packet {
        Packet::FollowerInfo { .. } => T_FOLLOWERINFO,
        Packet::ObserverInfo { .. } => T_OBSERVERINFO,
        Packet::LeaderInfo { .. } => T_LEADERINFO,
        Packet::AckEpoch(_) => T_ACKEPOCH,
        Packet::Diff { .. } => T_DIFF,
        Packet::Trunc { .. } => T_TRUNC,
        Packet::Snap { .. } => T_SNAP,
        Packet::Proposal(_) => T_PROPOSAL,
        Packet::Commit { .. } => T_COMMIT,
        Packet::NewLeader { .. } => T_NEWLEADER,
        Packet::Ack { .. } => T_ACK,
        Packet::UpToDate => T_UPTODATE,
        Packet::Inform(_) => T_INFORM,
        Packet::Ping { .. } => T_PING,
    }
}

fn state_code(s: ServerState) -> u8 {
    match s {
        ServerState::Looking => 0,
        ServerState::Following => 1,
        ServerState::Leading => 2,
        ServerState::Observing => 3,
    }
}

fn count_u32(n: usize) -> u32 {
    u32::try_from(n).expect("a count that fits the frame")
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, count_u32(b.len()));
    out.extend_from_slice(b);
}

/// Decodes one message from exactly `bytes`.
///
/// # Errors
/// A short frame, an unknown type or state, an invalid flag, a length past the frame or past
/// [`MAX_PAYLOAD_LEN`], or bytes left over.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let mut r = Cursor { bytes, pos: 0 };
    let kind = r.u8()?;
    let msg = if kind == T_NOTIFICATION {
        let state = match r.u8()? {
            0 => ServerState::Looking,
            1 => ServerState::Following,
            2 => ServerState::Leading,
            3 => ServerState::Observing,
            v => {
                return Err(DecodeError::BadValue {
                    field: "state",
                    value: u64::from(v),
                })
            }
        };
        let leader = r.u64()?;
        let zxid = r.zxid()?;
        let peer_epoch = r.u32()?;
        let election_epoch = r.u64()?;
        Message::Notification(Notification {
            state,
            vote: Vote {
                leader,
                zxid,
                peer_epoch,
            },
            election_epoch,
        })
    } else {
        if !PACKET_TYPES.contains(&kind) {
            return Err(DecodeError::UnknownType(kind));
        }
        let session = r.u64()?;
        let epoch = r.u32()?;
        let seq = r.u64()?;
        let packet = decode_packet(kind, &mut r)?;
        Message::Peer {
            session,
            epoch,
            seq,
            packet,
        }
    };
    if r.pos != bytes.len() {
        return Err(DecodeError::TrailingBytes(bytes.len() - r.pos));
    }
    Ok(msg)
}

fn decode_packet(kind: u8, r: &mut Cursor<'_>) -> Result<Packet, DecodeError> {
    Ok(match kind {
        T_FOLLOWERINFO => Packet::FollowerInfo {
            accepted_epoch: r.u32()?,
        },
        T_OBSERVERINFO => Packet::ObserverInfo {
            accepted_epoch: r.u32()?,
        },
        T_LEADERINFO => Packet::LeaderInfo { epoch: r.u32()? },
        T_NEWLEADER => Packet::NewLeader { epoch: r.u32()? },
        T_ACKEPOCH => {
            let fresh = match r.u8()? {
                0 => false,
                1 => true,
                v => {
                    return Err(DecodeError::BadValue {
                        field: "fresh",
                        value: u64::from(v),
                    })
                }
            };
            let current_epoch = r.u32()?;
            let last_zxid = r.zxid()?;
            let committed_zxid = r.zxid()?;
            let count = r.u32()? as usize;
            // Checked before reserving: a hostile count cannot make us allocate.
            r.need(count.saturating_mul(8))?;
            let mut epoch_ends = Vec::with_capacity(count);
            for _ in 0..count {
                epoch_ends.push(r.zxid()?);
            }
            Packet::AckEpoch(AckEpoch {
                fresh,
                current_epoch,
                last_zxid,
                committed_zxid,
                epoch_ends,
            })
        }
        T_DIFF => Packet::Diff { after: r.zxid()? },
        T_TRUNC => Packet::Trunc { after: r.zxid()? },
        T_COMMIT => Packet::Commit { zxid: r.zxid()? },
        T_ACK => Packet::Ack { zxid: r.zxid()? },
        T_SNAP => {
            let zxid = r.zxid()?;
            let snapshot = r.bytes(usize::MAX)?;
            Packet::Snap { zxid, snapshot }
        }
        T_PROPOSAL | T_INFORM => {
            let zxid = r.zxid()?;
            let payload = r.bytes(MAX_PAYLOAD_LEN)?;
            let e = Entry { zxid, payload };
            if kind == T_PROPOSAL {
                Packet::Proposal(e)
            } else {
                Packet::Inform(e)
            }
        }
        T_UPTODATE => Packet::UpToDate,
        T_PING => Packet::Ping { round: r.u64()? },
        other => return Err(DecodeError::UnknownType(other)),
    })
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn need(&self, n: usize) -> Result<(), DecodeError> {
        let left = self.bytes.len() - self.pos;
        if n > left {
            return Err(DecodeError::Truncated {
                at: self.pos,
                need: n,
                left,
            });
        }
        Ok(())
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.need(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(&self.bytes[self.pos..self.pos + N]);
        self.pos += N;
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take()?))
    }

    fn zxid(&mut self) -> Result<Zxid, DecodeError> {
        Ok(Zxid::from_raw(self.u64()?))
    }

    fn bytes(&mut self, max: usize) -> Result<Bytes, DecodeError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(DecodeError::TooLong { len, max });
        }
        self.need(len)?;
        let b = Bytes::copy_from_slice(&self.bytes[self.pos..self.pos + len]);
        self.pos += len;
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::super::rng::Rng;
    use super::*;

    fn entry(epoch: u32, counter: u32, payload: &'static [u8]) -> Entry {
        Entry {
            zxid: Zxid::new(epoch, counter),
            payload: Bytes::from_static(payload),
        }
    }

    /// One of every message, with field values that would catch a swapped or truncated field.
    fn every_message() -> Vec<Message> {
        let packets = vec![
            Packet::FollowerInfo {
                accepted_epoch: 0x0102_0304,
            },
            Packet::ObserverInfo { accepted_epoch: 7 },
            Packet::LeaderInfo { epoch: 9 },
            Packet::AckEpoch(AckEpoch {
                fresh: true,
                current_epoch: 8,
                last_zxid: Zxid::new(8, 3),
                committed_zxid: Zxid::new(7, 2),
                epoch_ends: vec![Zxid::new(7, 9), Zxid::new(8, 3)],
            }),
            Packet::AckEpoch(AckEpoch {
                fresh: false,
                current_epoch: 0,
                last_zxid: Zxid::ZERO,
                committed_zxid: Zxid::ZERO,
                epoch_ends: vec![],
            }),
            Packet::Diff {
                after: Zxid::new(3, 4),
            },
            Packet::Trunc {
                after: Zxid::new(3, 5),
            },
            Packet::Snap {
                zxid: Zxid::new(3, 6),
                snapshot: Bytes::from_static(b"an image"),
            },
            Packet::Proposal(entry(4, 1, b"create /a")),
            Packet::Proposal(entry(4, 2, b"")),
            Packet::Commit {
                zxid: Zxid::new(4, 1),
            },
            Packet::NewLeader { epoch: 4 },
            Packet::Ack {
                zxid: Zxid::new(4, 0),
            },
            Packet::UpToDate,
            Packet::Inform(entry(4, 3, b"set /a")),
            Packet::Ping {
                round: 0x0a0b_0c0d_0e0f_1011,
            },
        ];
        let mut msgs: Vec<Message> = packets
            .into_iter()
            .enumerate()
            .map(|(i, packet)| Message::Peer {
                session: 0xdead_beef_0000_0000 | i as u64,
                epoch: 0x0102_0000 | i as u32,
                seq: 1 + i as u64,
                packet,
            })
            .collect();
        for (i, state) in [
            ServerState::Looking,
            ServerState::Following,
            ServerState::Leading,
            ServerState::Observing,
        ]
        .into_iter()
        .enumerate()
        {
            msgs.push(Message::Notification(Notification {
                state,
                vote: Vote {
                    leader: 3 + i as u64,
                    zxid: Zxid::new(2, 10),
                    peer_epoch: 2,
                },
                election_epoch: 41,
            }));
        }
        msgs
    }

    #[test]
    fn every_message_round_trips_and_every_truncation_fails() {
        let msgs = every_message();
        // Every packet kind is covered (the match below fails to compile when one is added).
        for m in &msgs {
            if let Message::Peer { packet, .. } = m {
                match packet {
                    Packet::FollowerInfo { .. }
                    | Packet::ObserverInfo { .. }
                    | Packet::LeaderInfo { .. }
                    | Packet::AckEpoch(_)
                    | Packet::Diff { .. }
                    | Packet::Trunc { .. }
                    | Packet::Snap { .. }
                    | Packet::Proposal(_)
                    | Packet::Commit { .. }
                    | Packet::NewLeader { .. }
                    | Packet::Ack { .. }
                    | Packet::UpToDate
                    | Packet::Inform(_)
                    | Packet::Ping { .. } => {}
                }
            }
        }
        let kinds: std::collections::BTreeSet<u8> = msgs.iter().map(|m| encode(m)[0]).collect();
        assert_eq!(kinds.len(), 15, "{kinds:?}");
        for m in &msgs {
            let bytes = encode(m);
            assert_eq!(&decode(&bytes).unwrap(), m);
            for cut in 0..bytes.len() {
                assert!(decode(&bytes[..cut]).is_err(), "{m:?} cut at {cut}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert_eq!(decode(&longer), Err(DecodeError::TrailingBytes(1)));
        }
    }

    #[test]
    fn bad_values_are_errors() {
        assert_eq!(decode(&[99]), Err(DecodeError::UnknownType(99)));
        let mut n = encode(&every_message().pop().unwrap());
        n[1] = 9;
        assert!(matches!(
            decode(&n),
            Err(DecodeError::BadValue { field: "state", .. })
        ));
        // A count that claims more epoch ends than the frame holds: refused before allocating.
        let mut a = Vec::new();
        a.push(T_ACKEPOCH);
        a.extend_from_slice(&[0; 20]);
        a.push(1);
        a.extend_from_slice(&[0; 4 + 16]);
        a.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(decode(&a), Err(DecodeError::Truncated { .. })));
        // A payload longer than a log record may be.
        let mut p = vec![T_PROPOSAL];
        p.extend_from_slice(&[0; 28]);
        p.extend_from_slice(&(MAX_PAYLOAD_LEN as u32 + 1).to_be_bytes());
        assert!(matches!(decode(&p), Err(DecodeError::TooLong { .. })));
    }

    #[test]
    fn garbage_and_mutations_never_panic() {
        let mut rng = Rng::new(0x5eed);
        let valid: Vec<Vec<u8>> = every_message().iter().map(encode).collect();
        let mut decoded = 0;
        for round in 0..20_000 {
            let bytes: Vec<u8> = if round % 2 == 0 {
                let len = rng.below(64) as usize;
                let mut b: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                // Often start with a real type so the body parsers are exercised.
                if let Some(first) = b.first_mut() {
                    if rng.below(2) == 0 {
                        *first = valid[rng.below(valid.len() as u64) as usize][0];
                    }
                }
                b
            } else {
                let mut b = valid[rng.below(valid.len() as u64) as usize].clone();
                for _ in 0..1 + rng.below(3) {
                    let i = rng.below(b.len() as u64) as usize;
                    b[i] ^= 1 << rng.below(8);
                }
                b
            };
            if let Ok(m) = decode(&bytes) {
                // Whatever decodes, re-encodes to the same bytes: the encoding is canonical.
                assert_eq!(encode(&m), bytes);
                decoded += 1;
            }
        }
        assert!(
            decoded > 1000,
            "mutations should often stay valid: {decoded}"
        );
    }
}
