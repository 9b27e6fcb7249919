//! Commands over a whole subtree: `ls -R`, `deleteall`, `setAcl -R` and `tree`.
//!
//! A subtree is read level by level, with each level's requests pipelined (at most [`CHUNK`]
//! in flight), so a wide tree costs a few round trips rather than one per node. Every walk has
//! a bound: [`MAX_SUBTREE`] nodes for the commands that must see everything, the `-d`/`-n`
//! limits for `tree`.

use futures::future::join_all;
use rookery_client::{Acl, Error as ZkError, Stat};
use serde_json::{json, Value};

use crate::error::{CliError, Op};
use crate::ops::{Ctx, Outcome};

/// Requests in flight at once during a walk (the client holds up to 10,000).
const CHUNK: usize = 1000;

/// The most nodes `ls -R`, `deleteall` and `setAcl -R` will handle in one command.
const MAX_SUBTREE: usize = 1_000_000;

/// `parent/child`, without doubling the root's slash.
fn join(parent: &str, child: &str) -> String {
    if parent.ends_with('/') {
        format!("{parent}{child}")
    } else {
        format!("{parent}/{child}")
    }
}

fn is_no_node(e: &CliError) -> bool {
    matches!(
        e,
        CliError::Zk {
            source: ZkError::NoNode,
            ..
        }
    )
}

/// Every path of the subtree at `root`, root first, breadth first (zkCli's `ls -R` order).
/// Nodes deleted during the walk are left out; the root must exist.
pub(crate) async fn subtree(ctx: &Ctx, root: &str) -> Result<Vec<String>, CliError> {
    let first = ctx
        .call(Op::Read, root, ctx.client.get_children(root))
        .await?;
    let mut all = vec![root.to_owned()];
    let mut level: Vec<String> = first.iter().map(|c| join(root, c)).collect();
    while !level.is_empty() {
        if all.len() + level.len() > MAX_SUBTREE {
            return Err(CliError::BadArgument(format!(
                "{root} has more than {MAX_SUBTREE} nodes below it; work on a smaller subtree"
            )));
        }
        all.extend(level.iter().cloned());
        let mut next = Vec::new();
        for chunk in level.chunks(CHUNK) {
            let replies = join_all(
                chunk
                    .iter()
                    .map(|p| ctx.call(Op::Read, p, ctx.client.get_children(p))),
            )
            .await;
            for (parent, reply) in chunk.iter().zip(replies) {
                match reply {
                    Ok(children) => next.extend(children.iter().map(|c| join(parent, c))),
                    // Deleted since its parent was listed.
                    Err(e) if is_no_node(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        level = next;
    }
    Ok(all)
}

/// `deleteall`: the subtree's nodes deepest first, `batch` deletes per `multi` (as ZooKeeper's
/// `ZKUtil.deleteRecursive` does), so each batch is all or nothing.
pub(crate) async fn delete_all(ctx: &Ctx, root: &str, batch: usize) -> Result<Outcome, CliError> {
    let mut paths = subtree(ctx, root).await?;
    // Breadth-first order reversed puts every node after all of its descendants.
    paths.reverse();
    let mut deleted = 0;
    for chunk in paths.chunks(batch.max(1)) {
        let multi = chunk
            .iter()
            .fold(ctx.client.multi(), |m, p| m.delete(p, None));
        match ctx.call(Op::Delete, root, multi.commit()).await {
            Ok(_) => deleted += chunk.len(),
            // Name the node that failed, not the root.
            Err(CliError::Zk {
                source: ZkError::MultiFailed { index, source },
                ..
            }) => {
                let path = chunk.get(index).map_or(root, String::as_str);
                return Err(CliError::zk(*source, Op::Delete, path));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Outcome::quiet().with("path", root).with("deleted", deleted))
}

/// `setAcl -R`: the same ACL on every path given; returns how many were set.
pub(crate) async fn set_acl_all(
    ctx: &Ctx,
    paths: &[String],
    acl: &[Acl],
    version: Option<i32>,
) -> Result<usize, CliError> {
    let mut done = 0;
    for chunk in paths.chunks(CHUNK) {
        let replies = join_all(
            chunk
                .iter()
                .map(|p| ctx.call(Op::SetAcl, p, ctx.client.set_acl(p, acl.to_vec(), version))),
        )
        .await;
        for reply in replies {
            match reply {
                Ok(_) => done += 1,
                Err(e) if is_no_node(&e) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(done)
}

/// One node of a `tree`.
struct Node {
    name: String,
    path: String,
    depth: u32,
    stat: Option<Stat>,
    children: Vec<usize>,
    /// Children not shown: beyond the depth limit or the node limit.
    omitted: u64,
    /// The node is below the depth limit, so `omitted` counts its children.
    at_depth_limit: bool,
    /// Reading it was refused (NoAuth).
    denied: bool,
    /// Deleted during the walk.
    gone: bool,
}

impl Node {
    fn new(name: String, path: String, depth: u32) -> Node {
        Node {
            name,
            path,
            depth,
            stat: None,
            children: Vec::new(),
            omitted: 0,
            at_depth_limit: false,
            denied: false,
            gone: false,
        }
    }
}

/// `tree`: the subtree at `root`, at most `max_depth` levels below it and `max_nodes` nodes,
/// each with its data size; what the limits cut is counted, not hidden.
pub(crate) async fn tree(
    ctx: &Ctx,
    root: &str,
    max_depth: u32,
    max_nodes: u32,
) -> Result<Outcome, CliError> {
    let max_nodes = max_nodes as usize;
    let mut nodes = vec![Node::new(root.to_owned(), root.to_owned(), 0)];
    let mut level = vec![0];
    while !level.is_empty() {
        let mut next = Vec::new();
        for chunk in level.chunks(CHUNK) {
            read_level(ctx, &mut nodes, chunk, max_depth, max_nodes, &mut next).await?;
        }
        level = next;
    }
    let mut text = String::new();
    render(&nodes, 0, "", "", &mut text);
    let truncated = nodes.iter().any(|n| n.omitted > 0);
    Ok(Outcome::text(text.trim_end().to_owned())
        .with("path", root)
        .with("tree", to_json(&nodes, 0))
        .with("truncated", truncated))
}

/// Reads the nodes `chunk` of one level: children and stat for nodes above the depth limit,
/// the stat alone for nodes at it. New children go to `next`.
async fn read_level(
    ctx: &Ctx,
    nodes: &mut Vec<Node>,
    chunk: &[usize],
    max_depth: u32,
    max_nodes: usize,
    next: &mut Vec<usize>,
) -> Result<(), CliError> {
    let (expand, leaves): (Vec<usize>, Vec<usize>) =
        chunk.iter().partition(|&&i| nodes[i].depth < max_depth);
    let listed = join_all(expand.iter().map(|&i| {
        let p = &nodes[i].path;
        ctx.call(Op::Read, p, ctx.client.get_children2(p))
    }))
    .await;
    let stats = join_all(leaves.iter().map(|&i| {
        let p = &nodes[i].path;
        ctx.call(Op::Read, p, ctx.client.exists(p))
    }))
    .await;
    for (&i, reply) in expand.iter().zip(listed) {
        let Some((children, stat)) = settle(nodes, i, reply)? else {
            continue;
        };
        nodes[i].stat = Some(stat);
        for child in children {
            if nodes.len() >= max_nodes {
                nodes[i].omitted += 1;
                continue;
            }
            let path = join(&nodes[i].path, &child);
            let depth = nodes[i].depth + 1;
            nodes.push(Node::new(child, path, depth));
            let id = nodes.len() - 1;
            nodes[i].children.push(id);
            next.push(id);
        }
    }
    for (&i, reply) in leaves.iter().zip(stats) {
        match settle(nodes, i, reply)? {
            Some(Some(stat)) => {
                nodes[i].stat = Some(stat);
                nodes[i].omitted = u64::try_from(stat.num_children).unwrap_or(0);
                nodes[i].at_depth_limit = true;
            }
            Some(None) => nodes[i].gone = true,
            None => {}
        }
    }
    Ok(())
}

/// The reply for node `i`, or `None` after marking the node gone or denied; the root's errors
/// are the command's.
fn settle<T>(
    nodes: &mut [Node],
    i: usize,
    reply: Result<T, CliError>,
) -> Result<Option<T>, CliError> {
    match reply {
        Ok(v) => Ok(Some(v)),
        Err(e) if i == 0 => Err(e),
        Err(e) if is_no_node(&e) => {
            nodes[i].gone = true;
            Ok(None)
        }
        Err(CliError::Zk {
            source: ZkError::NoAuth,
            ..
        }) => {
            nodes[i].denied = true;
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn label(n: &Node) -> String {
    match (&n.stat, n.denied) {
        (_, true) => format!("{} (no access)", n.name),
        (Some(st), _) => format!("{} ({} B)", n.name, st.data_length),
        (None, _) => n.name.clone(),
    }
}

/// Draws node `i` and its subtree with box-drawing lines, as `tree(1)` does.
fn render(nodes: &[Node], i: usize, first: &str, rest: &str, out: &mut String) {
    let n = &nodes[i];
    out.push_str(&format!("{first}{}\n", label(n)));
    let shown: Vec<usize> = n
        .children
        .iter()
        .copied()
        .filter(|&c| !nodes[c].gone)
        .collect();
    let more = match (n.omitted, n.at_depth_limit) {
        (0, _) => None,
        (1, true) => Some("… 1 child below the depth limit (-d)".to_owned()),
        (k, true) => Some(format!("… {k} children below the depth limit (-d)")),
        (k, false) => Some(format!("… {k} more not shown (-n)")),
    };
    for (pos, &c) in shown.iter().enumerate() {
        let last = pos + 1 == shown.len() && more.is_none();
        let (branch, indent) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        render(
            nodes,
            c,
            &format!("{rest}{branch}"),
            &format!("{rest}{indent}"),
            out,
        );
    }
    if let Some(more) = more {
        out.push_str(&format!("{rest}└── {more}\n"));
    }
}

fn to_json(nodes: &[Node], i: usize) -> Value {
    let n = &nodes[i];
    let children: Vec<Value> = n
        .children
        .iter()
        .filter(|&&c| !nodes[c].gone)
        .map(|&c| to_json(nodes, c))
        .collect();
    let mut v = json!({
        "path": n.path,
        "children": children,
        "omitted": n.omitted,
    });
    if let Some(st) = &n.stat {
        v["dataLength"] = json!(st.data_length);
        v["numChildren"] = json!(st.num_children);
    }
    if n.denied {
        v["denied"] = json!(true);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, len: i32, children: Vec<usize>) -> Node {
        let mut n = Node::new(name.into(), format!("/{name}"), 0);
        n.stat = Some(Stat {
            data_length: len,
            ..Stat::default()
        });
        n.children = children;
        n
    }

    #[test]
    fn tree_draws_branches_and_limits() {
        let mut nodes = vec![
            node("/", 0, vec![1, 3]),
            node("a", 5, vec![2]),
            node("b", 3, vec![]),
            node("zookeeper", 0, vec![]),
        ];
        nodes[2].omitted = 4;
        nodes[2].at_depth_limit = true;
        nodes[0].omitted = 2;
        let mut out = String::new();
        render(&nodes, 0, "", "", &mut out);
        assert_eq!(
            out,
            "/ (0 B)\n\
             ├── a (5 B)\n\
             │   └── b (3 B)\n\
             │       └── … 4 children below the depth limit (-d)\n\
             ├── zookeeper (0 B)\n\
             └── … 2 more not shown (-n)\n"
        );
        assert_eq!(
            to_json(&nodes, 0)["children"][0]["children"][0]["omitted"],
            4
        );
    }

    #[test]
    fn join_keeps_one_slash() {
        assert_eq!(join("/", "a"), "/a");
        assert_eq!(join("/a", "b"), "/a/b");
    }
}
