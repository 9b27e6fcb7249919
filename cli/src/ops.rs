//! The commands that talk to the server: one function each, every request bounded by the
//! request timeout, each returning zkCli's text and the JSON fields of its result.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rookery_client::{acl, Client, CreateMode, CreateOptions, Error as ZkError, WatcherType};
use serde_json::{json, Map, Value};

use crate::error::{CliError, Op};
use crate::format::{
    acl_json, acl_text, data_json, data_text, list_text, parse_acl, stat_json, stat_text,
};
use crate::parse::{Cmd, WatchMode};
use crate::walk;
use crate::watches::{Kind, Watches};

/// What a command printed: zkCli's text (`None` when zkCli prints nothing) and the fields of
/// its JSON line (`ok` and `command` are added when it is printed).
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub text: Option<String>,
    pub json: Map<String, Value>,
}

impl Outcome {
    pub(crate) fn text(text: impl Into<String>) -> Outcome {
        Outcome {
            text: Some(text.into()),
            json: Map::new(),
        }
    }

    pub(crate) fn quiet() -> Outcome {
        Outcome::default()
    }

    pub(crate) fn with(mut self, key: &str, value: impl Into<Value>) -> Outcome {
        self.json.insert(key.to_owned(), value.into());
        self
    }

    /// Appends the stat block to the text (zkCli's `-s`).
    fn and_stat(mut self, stat: &rookery_client::Stat, print: bool) -> Outcome {
        if print {
            let block = stat_text(stat);
            self.text = Some(match self.text {
                Some(t) => format!("{t}\n{block}"),
                None => block,
            });
        }
        self.with("stat", stat_json(stat))
    }
}

/// What the commands need: the session, the timeout, and where watches go.
pub(crate) struct Ctx {
    pub client: Client,
    pub timeout: Duration,
    pub watches: Arc<Watches>,
    /// The session's number in this shell, so watches of an old session never shadow new ones.
    pub generation: u64,
}

impl Ctx {
    /// Awaits one request, at most the request timeout.
    pub(crate) async fn call<T>(
        &self,
        op: Op,
        path: &str,
        request: impl Future<Output = rookery_client::Result<T>>,
    ) -> Result<T, CliError> {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(CliError::zk(e, op, path)),
            Err(_) => Err(CliError::Timeout {
                path: path.to_owned(),
                timeout: self.timeout,
            }),
        }
    }
}

/// Runs a command that needs the server.
pub(crate) async fn run(ctx: &Ctx, cmd: Cmd) -> Result<Outcome, CliError> {
    match cmd {
        Cmd::Ls {
            stat,
            watch,
            recursive,
            path,
        } => ls(ctx, &path, stat, watch, recursive).await,
        Cmd::Tree { depth, max, path } => walk::tree(ctx, &path, depth, max).await,
        Cmd::Get { stat, watch, path } => get(ctx, &path, stat, watch).await,
        Cmd::Create {
            sequential,
            ephemeral,
            container,
            ttl,
            path,
            data,
            acl,
        } => {
            let mode = create_mode(sequential, ephemeral, container, ttl)?;
            create(ctx, &path, mode, ttl, data, acl).await
        }
        Cmd::Set {
            stat,
            version,
            path,
            data,
        } => set(ctx, &path, &data, version, stat).await,
        Cmd::Delete { version, path } => {
            ctx.call(Op::Delete, &path, ctx.client.delete(&path, version))
                .await?;
            Ok(Outcome::quiet().with("deleted", path))
        }
        Cmd::DeleteAll { batch, path } => walk::delete_all(ctx, &path, batch as usize).await,
        Cmd::Stat { watch, path } => stat(ctx, &path, watch).await,
        Cmd::GetAcl { stat, path } => get_acl(ctx, &path, stat).await,
        Cmd::SetAcl {
            stat,
            version,
            recursive,
            path,
            acl,
        } => set_acl(ctx, &path, &acl, version, recursive, stat).await,
        Cmd::AddAuth { scheme, auth } => {
            let added = ctx.client.add_auth(&scheme, auth.as_bytes());
            ctx.call(Op::Auth, &scheme, added).await?;
            Ok(Outcome::quiet().with("scheme", scheme))
        }
        Cmd::AddWatch { mode, path } => add_watch(ctx, &path, mode).await,
        Cmd::RemoveWatches {
            child, data, path, ..
        } => remove_watches(ctx, &path, Cmd::watcher_type(child, data)).await,
        Cmd::Sync { path } => {
            ctx.call(Op::Read, &path, ctx.client.sync(&path)).await?;
            Ok(Outcome::text("Sync is OK").with("synced", path))
        }
        Cmd::GetAllChildrenNumber { path } => {
            let n = ctx
                .call(Op::Read, &path, ctx.client.get_all_children_number(&path))
                .await?;
            Ok(Outcome::text(n.to_string())
                .with("path", path)
                .with("count", n))
        }
        Cmd::GetEphemerals { path } => {
            let paths = ctx
                .call(Op::Read, &path, ctx.client.get_ephemerals(&path))
                .await?;
            Ok(Outcome::text(list_text(&paths)).with("paths", paths))
        }
        Cmd::WhoAmI => who_am_i(ctx).await,
        Cmd::Config { watch, stat } => config(ctx, watch, stat).await,
        // The local commands never get here (the shell runs them itself).
        other => Err(CliError::BadArgument(format!(
            "{other:?} is not a server command"
        ))),
    }
}

async fn set(
    ctx: &Ctx,
    path: &str,
    data: &str,
    version: Option<i32>,
    stat: bool,
) -> Result<Outcome, CliError> {
    let st = ctx
        .call(
            Op::Write,
            path,
            ctx.client.set_data(path, data.as_bytes(), version),
        )
        .await?;
    Ok(Outcome::quiet().with("path", path).and_stat(&st, stat))
}

async fn get_acl(ctx: &Ctx, path: &str, stat: bool) -> Result<Outcome, CliError> {
    let (acl, st) = ctx.call(Op::Read, path, ctx.client.get_acl(path)).await?;
    Ok(Outcome::text(acl_text(&acl))
        .with("path", path)
        .with("acl", acl_json(&acl))
        .and_stat(&st, stat))
}

async fn remove_watches(ctx: &Ctx, path: &str, ty: WatcherType) -> Result<Outcome, CliError> {
    ctx.call(Op::Watch, path, ctx.client.remove_all_watches(path, ty))
        .await?;
    Ok(Outcome::quiet()
        .with("path", path)
        .with("type", format!("{ty:?}")))
}

async fn ls(
    ctx: &Ctx,
    path: &str,
    stat: bool,
    watch: bool,
    recursive: bool,
) -> Result<Outcome, CliError> {
    if recursive {
        let paths = walk::subtree(ctx, path).await?;
        return Ok(Outcome::text(paths.join("\n")).with("paths", paths));
    }
    let c = &ctx.client;
    let (children, st) = match (stat, watch) {
        (false, false) => (ctx.call(Op::Read, path, c.get_children(path)).await?, None),
        (false, true) => {
            let (children, w) = ctx
                .call(Op::Read, path, c.get_children_watched(path))
                .await?;
            ctx.watches.oneshot(ctx.generation, Kind::Child, path, w);
            (children, None)
        }
        (true, false) => {
            let (children, st) = ctx.call(Op::Read, path, c.get_children2(path)).await?;
            (children, Some(st))
        }
        (true, true) => {
            let (children, st, w) = ctx
                .call(Op::Read, path, c.get_children2_watched(path))
                .await?;
            ctx.watches.oneshot(ctx.generation, Kind::Child, path, w);
            (children, Some(st))
        }
    };
    let out = Outcome::text(list_text(&children))
        .with("path", path)
        .with("children", children);
    Ok(match st {
        Some(st) => out.and_stat(&st, true),
        None => out,
    })
}

async fn get(ctx: &Ctx, path: &str, stat: bool, watch: bool) -> Result<Outcome, CliError> {
    let (data, st) = if watch {
        let (data, st, w) = ctx
            .call(Op::Read, path, ctx.client.get_data_watched(path))
            .await?;
        ctx.watches.oneshot(ctx.generation, Kind::Data, path, w);
        (data, st)
    } else {
        ctx.call(Op::Read, path, ctx.client.get_data(path)).await?
    };
    let mut out = Outcome::text(data_text(&data)).with("path", path);
    data_json(&data, &mut out.json);
    Ok(out.and_stat(&st, stat))
}

async fn stat(ctx: &Ctx, path: &str, watch: bool) -> Result<Outcome, CliError> {
    let st = if watch {
        // The watch stays even when the node is missing: it fires when the node is created.
        let (st, w) = ctx
            .call(Op::Read, path, ctx.client.exists_watched(path))
            .await?;
        ctx.watches.oneshot(ctx.generation, Kind::Data, path, w);
        st
    } else {
        ctx.call(Op::Read, path, ctx.client.exists(path)).await?
    };
    match st {
        Some(st) => Ok(Outcome::quiet().with("path", path).and_stat(&st, true)),
        None => Err(CliError::zk(ZkError::NoNode, Op::Read, path)),
    }
}

/// The create mode for zkCli's flags, refusing the combinations zkCli refuses.
fn create_mode(
    sequential: bool,
    ephemeral: bool,
    container: bool,
    ttl: Option<u64>,
) -> Result<CreateMode, CliError> {
    let bad = |why: &str| Err(CliError::BadArgument(why.to_owned()));
    if container && (sequential || ephemeral || ttl.is_some()) {
        return bad("-c cannot be combined with -s, -e or -t");
    }
    if ephemeral && ttl.is_some() {
        return bad("TTLs cannot be used with ephemeral nodes (-e)");
    }
    Ok(match (sequential, ephemeral, container, ttl.is_some()) {
        (_, _, true, _) => CreateMode::Container,
        (true, _, _, true) => CreateMode::PersistentSequentialWithTtl,
        (false, _, _, true) => CreateMode::PersistentWithTtl,
        (true, true, _, _) => CreateMode::EphemeralSequential,
        (false, true, _, _) => CreateMode::Ephemeral,
        (true, false, _, _) => CreateMode::PersistentSequential,
        (false, false, _, _) => CreateMode::Persistent,
    })
}

async fn create(
    ctx: &Ctx,
    path: &str,
    mode: CreateMode,
    ttl: Option<u64>,
    data: Option<String>,
    acl: Option<String>,
) -> Result<Outcome, CliError> {
    let acl = match acl {
        Some(text) => parse_acl(&text)?,
        None => acl::OPEN_ACL_UNSAFE.clone(),
    };
    let mut options = CreateOptions::new(mode).with_acl(acl);
    if let Some(ms) = ttl {
        options = options.with_ttl(Duration::from_millis(ms));
    }
    let data = data.unwrap_or_default();
    let created = ctx
        .call(
            Op::Create,
            path,
            ctx.client.create(path, data.as_bytes(), &options),
        )
        .await?;
    Ok(Outcome::text(format!("Created {created}")).with("created", created))
}

async fn set_acl(
    ctx: &Ctx,
    path: &str,
    acl: &str,
    version: Option<i32>,
    recursive: bool,
    stat: bool,
) -> Result<Outcome, CliError> {
    let acl = parse_acl(acl)?;
    let st = ctx
        .call(
            Op::SetAcl,
            path,
            ctx.client.set_acl(path, acl.clone(), version),
        )
        .await?;
    let mut out = Outcome::quiet().with("path", path);
    if recursive {
        let below = walk::subtree(ctx, path).await?;
        let n = walk::set_acl_all(ctx, &below[1..], &acl, version).await?;
        out = out.with("updated", n + 1);
    }
    // zkCli prints no stat for -R (it sets the ACLs in a callback); the top node's is useful.
    Ok(out.and_stat(&st, stat))
}

async fn add_watch(ctx: &Ctx, path: &str, mode: WatchMode) -> Result<Outcome, CliError> {
    let w = ctx
        .call(Op::Watch, path, ctx.client.add_watch(path, mode.wire()))
        .await?;
    let kind = match mode {
        WatchMode::Persistent => Kind::Persistent,
        WatchMode::PersistentRecursive => Kind::Recursive,
    };
    ctx.watches.persistent(ctx.generation, kind, path, w);
    Ok(Outcome::quiet()
        .with("path", path)
        .with("mode", mode.name()))
}

async fn who_am_i(ctx: &Ctx) -> Result<Outcome, CliError> {
    let ids = ctx.call(Op::Read, "/", ctx.client.who_am_i()).await?;
    let mut text = String::from("Auth scheme: User");
    for id in &ids {
        text.push_str(&format!("\n{}: {}", id.auth_scheme, id.user));
    }
    let json: Vec<Value> = ids
        .iter()
        .map(|id| json!({"scheme": id.auth_scheme, "user": id.user}))
        .collect();
    Ok(Outcome::text(text).with("identities", json))
}

/// zkCli's `getConfig` is a getData of `/zookeeper/config` outside any chroot.
async fn config(ctx: &Ctx, watch: bool, stat: bool) -> Result<Outcome, CliError> {
    const CONFIG: &str = "/zookeeper/config";
    let root = ctx
        .client
        .with_chroot(None)
        .map_err(|e| CliError::zk(e, Op::Read, CONFIG))?;
    let (data, st) = if watch {
        let (data, st, w) = ctx
            .call(Op::Read, CONFIG, root.get_data_watched(CONFIG))
            .await?;
        ctx.watches.oneshot(ctx.generation, Kind::Data, CONFIG, w);
        (data, st)
    } else {
        ctx.call(Op::Read, CONFIG, root.get_data(CONFIG)).await?
    };
    let text = data_text(&data);
    Ok(Outcome::text(text.trim_end().to_owned())
        .with("config", text)
        .and_stat(&st, stat))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_flags_map_to_modes() {
        assert_eq!(
            create_mode(false, false, false, None).unwrap(),
            CreateMode::Persistent
        );
        assert_eq!(
            create_mode(true, true, false, None).unwrap(),
            CreateMode::EphemeralSequential
        );
        assert_eq!(
            create_mode(true, false, false, Some(5)).unwrap(),
            CreateMode::PersistentSequentialWithTtl
        );
        assert_eq!(
            create_mode(false, false, true, None).unwrap(),
            CreateMode::Container
        );
        assert!(create_mode(false, true, false, Some(5)).is_err());
        assert!(create_mode(true, false, true, None).is_err());
    }
}
