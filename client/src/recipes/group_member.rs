//! [`GroupMember`]: Curator's `GroupMember`: membership in a group as an ephemeral node
//! `<group>/<id>` holding a payload, kept in place by a [`PersistentNode`].

use std::collections::BTreeMap;
use std::time::Duration;

use super::persistent_node::PersistentNode;
use super::{join, retried};
use crate::client::Client;
use crate::error::{Error, Result};
use crate::types::CreateOptions;

/// This process's membership of a group, and the group's current members.
#[derive(Debug)]
pub struct GroupMember {
    client: Client,
    group: String,
    node: PersistentNode,
}

impl GroupMember {
    /// Joins `group` as `id` with `payload`.
    pub fn start(client: &Client, group: &str, id: &str, payload: &[u8]) -> Self {
        GroupMember {
            client: client.clone(),
            group: group.to_owned(),
            node: PersistentNode::start(
                client,
                &join(group, id),
                payload,
                CreateOptions::ephemeral(),
            ),
        }
    }

    /// Waits until this member's node exists: `Ok(false)` if `timeout` passed first.
    ///
    /// # Errors
    /// As [`PersistentNode::wait_for_initial_create`].
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn wait_joined(&self, timeout: Duration) -> Result<bool> {
        self.node.wait_for_initial_create(timeout).await
    }

    /// Changes this member's payload.
    ///
    /// # Errors
    /// As [`PersistentNode::set_data`].
    ///
    /// # Cancellation safety
    /// As [`PersistentNode::set_data`].
    pub async fn set_payload(&self, payload: &[u8]) -> Result<()> {
        self.node.set_data(payload).await
    }

    /// The members now, by id, with their payloads.
    ///
    /// # Errors
    /// The errors of `getChildren` and `getData` (no group yet is `Ok` and empty).
    ///
    /// # Cancellation safety
    /// Cancellation safe.
    pub async fn current_members(&self) -> Result<BTreeMap<String, Vec<u8>>> {
        let ids = match retried(|| self.client.get_children(&self.group)).await {
            Ok(ids) => ids,
            Err(Error::NoNode) => return Ok(BTreeMap::new()),
            Err(e) => return Err(e),
        };
        let reads: Vec<_> = ids
            .iter()
            .map(|id| self.client.get_data(&join(&self.group, id)))
            .collect();
        let mut members = BTreeMap::new();
        for (id, read) in ids.into_iter().zip(reads) {
            match read.await {
                Ok((data, _)) => {
                    members.insert(id, data);
                }
                Err(Error::NoNode) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(members)
    }

    /// Leaves the group (deletes this member's node).
    ///
    /// # Errors
    /// As [`PersistentNode::close`].
    ///
    /// # Cancellation safety
    /// As [`PersistentNode::close`].
    pub async fn close(self) -> Result<()> {
        self.node.close().await
    }
}
