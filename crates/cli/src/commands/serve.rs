//! `edgerun serve`: models on the Open Inference Protocol v2, each under the strategy and
//! budget flags as `run` takes them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use edgerun_serve::server::{serve, ServedModel, ServerOptions};

use super::attention::AttentionArgs;
use super::strategy::{parse_size, StrategyArgs};

#[derive(Args)]
pub struct ServeArgs {
    /// Models to serve: PATH, PATH=NAME, or PATH=NAME/from/K to hold only stages K.. (a
    /// split's tail). PATH=NAME also answers NAME/from/K for every K (the tails of the model).
    /// The name defaults to the folder's name.
    #[arg(required = true, value_name = "MODEL[=NAME]")]
    pub models: Vec<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Listen on this port of --listen's address instead (0: any free port; the address
    /// bound is printed either way).
    #[arg(long)]
    pub port: Option<u16>,
    /// Requests computing at once (the kernels already use every core).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    pub concurrency: u64,
    /// Requests waiting beyond those; the next is answered 503.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(0..=100_000))]
    pub queue: u64,
    /// Largest request body (413 beyond it).
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub body_limit: u64,
    /// Seconds from a request's arrival to its answer (504 beyond it).
    #[arg(long, default_value_t = 60.0)]
    pub timeout: f64,
    #[command(flatten)]
    pub attention: AttentionArgs,
    #[command(flatten)]
    pub strategy: StrategyArgs,
}

/// `PATH[=NAME[/from/K]]`.
fn parse_spec(spec: &str) -> Result<(PathBuf, String, Option<usize>)> {
    let (path, name) = match spec.rsplit_once('=') {
        Some((path, name)) => (PathBuf::from(path), name.to_string()),
        None => {
            let path = PathBuf::from(spec);
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
                .with_context(|| format!("{spec}: name the model (PATH=NAME)"))?;
            (path, name)
        }
    };
    let (name, from) = match name.split_once("/from/") {
        Some((base, k)) => (
            base.to_string(),
            Some(
                k.parse::<usize>()
                    .with_context(|| format!("{spec}: {k:?} is not a stage"))?,
            ),
        ),
        None => (name, None),
    };
    if name.is_empty() || name.contains('/') || name.chars().any(char::is_whitespace) {
        bail!("{spec}: a model name is non-empty, without '/' or spaces");
    }
    Ok((path, name, from))
}

pub fn run(args: ServeArgs) -> Result<()> {
    for (flag, path) in args.strategy.output_paths() {
        if path.is_some() {
            bail!("{flag} is for one run; a server reports through /v2/models/NAME/stats");
        }
    }
    if !(args.timeout.is_finite() && args.timeout > 0.0) {
        bail!("--timeout must be a positive number of seconds");
    }
    let mut models: Vec<ServedModel> = Vec::new();
    for spec in &args.models {
        let (path, name, from) = parse_spec(spec)?;
        if models.iter().any(|m| m.name == name) {
            bail!("two models are named {name:?}");
        }
        let source = Arc::new(super::open_model(&path)?);
        let stages = source.model()?.stages().len();
        let part = match from {
            Some(k) if k == 0 || k >= stages => {
                bail!("{spec}: a tail starts at a stage from 1 to {}", stages - 1)
            }
            Some(k) => Some(k..stages),
            None => None,
        };
        let attention = args.attention.algorithm(source.model()?.as_ref())?;
        let session = args
            .strategy
            .part_session(source, attention, false, part)
            .with_context(|| format!("cannot serve {}", path.display()))?;
        let held = session.part();
        eprintln!(
            "serving {name} ({}, stages {}..{} of {stages}, {})",
            session.model().architecture(),
            held.start,
            held.end,
            args.strategy.strategy.name()
        );
        models.push(ServedModel {
            name,
            session: Arc::new(session),
            counters: Default::default(),
        });
    }
    let mut listen = args.listen;
    if let Some(port) = args.port {
        listen.set_port(port);
    }
    let options = ServerOptions {
        listen,
        concurrency: args.concurrency as usize,
        queue: args.queue as usize,
        body_limit: usize::try_from(args.body_limit).unwrap_or(usize::MAX),
        timeout: Duration::from_secs_f64(args.timeout),
    };
    serve(models, options, |address| {
        use std::io::Write;
        println!("listening on http://{address}");
        let _ = std::io::stdout().flush();
    })?;
    eprintln!("edgerun serve: stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        let (p, n, k) = parse_spec("/m/bert-base").unwrap();
        assert_eq!(
            (p, n.as_str(), k),
            (PathBuf::from("/m/bert-base"), "bert-base", None)
        );
        let (_, n, k) = parse_spec("/m/x=bert/from/12").unwrap();
        assert_eq!((n.as_str(), k), ("bert", Some(12)));
        for bad in ["/m/x=", "/m/x=a/b", "/m/x=bert/from/x", "/m/x=a b"] {
            assert!(parse_spec(bad).is_err(), "{bad}");
        }
    }
}
