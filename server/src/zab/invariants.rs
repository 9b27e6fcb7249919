//! Invariants of one server's state, checked after every step by the tests and the simulator.
//! Each is a property the protocol relies on; a violation is a bug in the core. (Properties of the
//! whole ensemble, such as one leader per epoch, are checked by the simulator.)

use super::error::InvariantViolation;
use super::leader::{HandlerState, Leader};
use super::learner::Learner;
use super::node::{Core, Node, Role};

impl Node {
    /// Checks every invariant of this server's state.
    ///
    /// # Errors
    /// The first invariant found broken.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let fail = |what: String| InvariantViolation {
            node: self.core.cfg.id,
            what,
        };
        check_core(&self.core).map_err(fail)?;
        match &self.role {
            Role::Looking => Ok(()),
            Role::Leading(l) => {
                // A voter whose log may have lost acknowledged writes never leads.
                if self.core.abstaining() {
                    return Err(fail("leading while abstaining after a tail cut".into()));
                }
                check_leader(&self.core, l).map_err(fail)
            }
            Role::Learning(l) => check_learner(&self.core, l).map_err(fail),
        }
    }
}

fn ensure(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

fn check_core(core: &Core) -> Result<(), String> {
    // The log is one history without holes, committed within it (no hole ever: ZOOKEEPER-4925).
    core.log.check()?;
    ensure(core.accepted_epoch >= core.current_epoch, || {
        format!(
            "accepted epoch {} below current epoch {}",
            core.accepted_epoch, core.current_epoch
        )
    })?;
    let (da, dc) = core.durable_epochs;
    ensure(da >= dc, || {
        format!("durable accepted epoch {da} below durable current epoch {dc}")
    })?;
    // Epochs only move forward, and what is on disk was once in memory.
    ensure(
        da <= core.accepted_epoch && dc <= core.current_epoch,
        || {
            format!(
                "durable epochs ({da}, {dc}) ahead of memory ({}, {})",
                core.accepted_epoch, core.current_epoch
            )
        },
    )?;
    // An epoch's proposals are logged only after the epoch is accepted.
    ensure(core.log.last().epoch() <= core.accepted_epoch, || {
        format!(
            "last zxid {} from an epoch after the accepted epoch {}",
            core.log.last(),
            core.accepted_epoch
        )
    })?;
    ensure(core.durable <= core.log.last(), || {
        format!(
            "durable {} past the last zxid {}",
            core.durable,
            core.log.last()
        )
    })?;
    let mut prev = 0;
    for op in &core.pending {
        ensure(op.seq > prev && op.seq <= core.store_seq, || {
            format!("store operations out of order: {:?}", core.pending)
        })?;
        prev = op.seq;
    }
    Ok(())
}

fn check_leader(core: &Core, l: &Leader) -> Result<(), String> {
    let Some(epoch) = l.epoch else {
        ensure(
            l.learners
                .values()
                .all(|h| h.state == HandlerState::Connected),
            || "a learner got past LEADERINFO before the epoch was chosen".into(),
        )?;
        return Ok(());
    };
    ensure(core.accepted_epoch == epoch, || {
        format!(
            "leading epoch {epoch} with accepted epoch {}",
            core.accepted_epoch
        )
    })?;
    ensure(
        l.syncing || l.learners.values().all(|h| h.state < HandlerState::Synced),
        || "a learner was synchronized before a quorum acknowledged the epoch".into(),
    )?;
    if l.syncing {
        ensure(core.current_epoch == epoch, || {
            format!(
                "synchronizing for epoch {epoch} with current epoch {}",
                core.current_epoch
            )
        })?;
        ensure(core.cfg.is_quorum(&l.epoch_ackers), || {
            "synchronizing without a quorum of epoch acknowledgements".into()
        })?;
    }
    if l.established {
        ensure(core.durable_epochs == (epoch, epoch), || {
            format!(
                "established in epoch {epoch} with durable epochs {:?}",
                core.durable_epochs
            )
        })?;
        ensure(core.cfg.is_quorum(&l.newleader_ackers), || {
            "established without a quorum of NEWLEADER acknowledgements".into()
        })?;
    } else {
        ensure(core.log.last().epoch() < epoch, || {
            format!(
                "proposal {} of epoch {epoch} before being established",
                core.log.last()
            )
        })?;
    }
    for (p, h) in &l.learners {
        ensure(h.matched <= core.log.last(), || {
            format!("learner {p} acknowledged {} past the log", h.matched)
        })?;
        ensure(h.recv_seq >= 2 && h.send_seq >= 1, || {
            format!("learner {p} session numbering broken")
        })?;
        ensure(!(h.observer && core.cfg.is_voter(*p)), || {
            format!("voter {p} connected as an observer")
        })?;
    }
    Ok(())
}

fn check_learner(core: &Core, l: &Learner) -> Result<(), String> {
    ensure(l.leader != core.cfg.id, || "following itself".into())?;
    if let Some(epoch) = l.epoch {
        ensure(core.accepted_epoch >= epoch, || {
            format!(
                "learning epoch {epoch} with accepted epoch {}",
                core.accepted_epoch
            )
        })?;
        if l.past_newleader() {
            ensure(core.current_epoch == epoch, || {
                format!(
                    "past NEWLEADER of epoch {epoch} with current epoch {}",
                    core.current_epoch
                )
            })?;
        }
        if l.serving() {
            // UPTODATE comes after the NEWLEADER acknowledgement, which waited for the epoch.
            ensure(core.durable_epochs.1 == epoch, || {
                format!(
                    "serving epoch {epoch} with durable current epoch {}",
                    core.durable_epochs.1
                )
            })?;
        }
    }
    ensure(
        l.acked <= core.durable || l.acked <= core.log.last(),
        || format!("acknowledged {} that is not in the log", l.acked),
    )?;
    Ok(())
}
