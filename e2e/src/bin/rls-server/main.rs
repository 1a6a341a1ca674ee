//! Envoy's rate limit service (`envoy.service.ratelimit.v3.RateLimitService`)
//! with its counters in Redis, for the end-to-end tests.
//!
//! The server holds no limits: each descriptor carries its own as an entry
//! `limit` = `<max>/<seconds>`, and its other entries name the counter within
//! the request's domain (see `descriptor.rs`). Counters are fixed windows in
//! Redis, checked and updated atomically (see `limiter.rs`), so several
//! servers (and the Envoys behind them) share one budget.
//! Speaks gRPC over HTTP/2 (prior knowledge) only.

mod descriptor;
mod limiter;
mod proto;
mod service;

use std::error::Error;
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;

use crate::limiter::Limiter;
use crate::service::RateLimitService;

const USAGE: &str =
    "usage: rls-server [--host 127.0.0.1] [--port 8089] [--redis redis://127.0.0.1:6379]";

/// How long in-flight calls may run after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Command-line options.
#[derive(Debug, PartialEq)]
struct Args {
    host: String,
    port: u16,
    redis: String,
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Command {
    Serve(Args),
    Help,
}

/// Parses `--host H`, `--port P`, `--redis URL` (also `--flag=value`) and `--help`.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut parsed = Args {
        host: "127.0.0.1".to_owned(),
        port: 8089,
        redis: "redis://127.0.0.1:6379".to_owned(),
    };
    let Some(flags) = e2e::cli::flags(args)? else {
        return Ok(Command::Help);
    };
    for (flag, value) in flags {
        match flag.as_str() {
            "--host" => parsed.host = value,
            "--port" => parsed.port = e2e::cli::port(&value)?,
            "--redis" => parsed.redis = value,
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    Ok(Command::Serve(parsed))
}

/// Resolves on SIGINT or SIGTERM. Handlers are installed on the call, so
/// call it before announcing the port.
fn shutdown_signal() -> std::io::Result<impl Future<Output = ()>> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    })
}

/// Serves the rate limit service on `listener` until `stop` resolves.
async fn serve(
    listener: TcpListener,
    limiter: Arc<Limiter>,
    stop: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    Server::builder()
        .serve_with_incoming_shutdown(RateLimitService::new(limiter), incoming, stop)
        .await
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Serve(args)) => args,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return Ok(());
        }
        Err(msg) => {
            eprintln!("rls-server: {msg}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let shutdown = shutdown_signal()?;
    let limiter = match Limiter::connect(&args.redis).await {
        Ok(limiter) => Arc::new(limiter),
        Err(msg) => {
            eprintln!("rls-server: {msg}");
            std::process::exit(1);
        }
    };
    let listener = TcpListener::bind((args.host.as_str(), args.port)).await?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "rls-server listening on {addr}")?;
        out.flush()?;
    }

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let mut server = tokio::spawn(serve(listener, limiter, async {
        let _ = stop_rx.await;
    }));
    tokio::select! {
        result = &mut server => return Ok(result??),
        () = shutdown => {}
    }
    // Graceful shutdown waits for open calls (and Envoy keeps its HTTP/2
    // connection open); cap that wait.
    let _ = stop_tx.send(());
    if let Ok(result) = tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        result??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn parses_cli() {
        let serve = |host: &str, port, redis: &str| {
            Ok(Command::Serve(Args {
                host: host.to_owned(),
                port,
                redis: redis.to_owned(),
            }))
        };
        assert_eq!(
            parse(&[]),
            serve("127.0.0.1", 8089, "redis://127.0.0.1:6379")
        );
        assert_eq!(
            parse(&["--port", "0", "--redis", "redis://127.0.0.1:6390"]),
            serve("127.0.0.1", 0, "redis://127.0.0.1:6390")
        );
        assert_eq!(
            parse(&["--host=0.0.0.0", "--port=9000", "--redis=redis://r:1/2"]),
            serve("0.0.0.0", 9000, "redis://r:1/2")
        );
        assert_eq!(parse(&["--help"]), Ok(Command::Help));
        assert!(parse(&["--port"]).is_err());
        assert!(parse(&["--port", "x"]).is_err());
        assert!(parse(&["--redis"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }
}

/// End to end through gRPC, against a `redis-server` started for the test
/// (skipped, saying so, when there is none).
#[cfg(test)]
mod e2e_tests;
