//! `rookery probe TARGET`: a health check for containers built `FROM scratch`, which have no
//! shell, nc or curl. `HOST:PORT` sends ZooKeeper's `ruok` and expects `imok`; an `http://` URL
//! is fetched with a GET and must answer 2xx (the sidecar's `/ready`). Exit status 0 when
//! healthy, 1 otherwise, with the reason on stderr.

use std::time::Duration;

use anyhow::{bail, Context};
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rookery_bench::parse_duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most a probe reads of an answer: `imok`, or a status line.
const MAX_ANSWER_BYTES: u64 = 64;

/// `rookery probe TARGET [--timeout D]`.
#[derive(clap::Args)]
pub(crate) struct ProbeCmd {
    /// `HOST:PORT` of a server (ruok), or an `http://HOST:PORT/PATH` URL.
    target: String,
    /// The whole probe's deadline.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    timeout: Duration,
}

/// Runs the probe; returns the exit status.
pub(crate) fn run(cmd: ProbeCmd) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("rookery probe: starting the tokio runtime: {e}");
            return 1;
        }
    };
    let outcome = runtime.block_on(async {
        match tokio::time::timeout(cmd.timeout, probe(&cmd.target)).await {
            Ok(result) => result,
            Err(_) => bail!("no answer within {:?}", cmd.timeout),
        }
    });
    match outcome {
        Ok(what) => {
            println!("{}: {what}", cmd.target);
            0
        }
        Err(e) => {
            eprintln!("rookery probe: {}: {e:#}", cmd.target);
            1
        }
    }
}

async fn probe(target: &str) -> anyhow::Result<String> {
    match target.strip_prefix("http://") {
        Some(_) => http(target).await,
        None => ruok(target).await,
    }
}

async fn ruok(addr: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream.write_all(b"ruok").await?;
    let mut answer = String::new();
    (&mut stream)
        .take(MAX_ANSWER_BYTES)
        .read_to_string(&mut answer)
        .await
        .context("reading the answer")?;
    match answer.as_str() {
        "imok" => Ok(answer),
        "" => bail!("the connection closed without an answer (is ruok whitelisted?)"),
        other => bail!("answered {other:?}, not imok"),
    }
}

async fn http(url: &str) -> anyhow::Result<String> {
    let uri: hyper::Uri = url.parse().context("not a URL")?;
    let authority = uri.authority().context("the URL has no host")?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((authority.host(), port))
        .await
        .with_context(|| format!("connecting to {authority}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("HTTP handshake")?;
    tokio::spawn(connection);
    let request = hyper::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(hyper::header::HOST, authority.as_str())
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await.context("GET")?;
    let status = response.status();
    if !status.is_success() {
        bail!("answered {status}");
    }
    Ok(status.to_string())
}
