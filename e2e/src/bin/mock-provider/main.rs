//! Mock LLM provider for the end-to-end tests and local trials.
//!
//! Speaks the OpenAI wire format, records every request, and lets the client
//! steer replies through `x-mock-*` headers and `/__mock/*` endpoints.
//! Serves HTTP/1.1 and h2c (prior knowledge) on the same port.

mod anthropic;
mod bedrock;
mod cohere;
mod conn;
mod control;
mod dashscope;
mod dashscope_extra;
mod dify;
mod gemini;
mod golden;
mod green;
mod minimax;
mod moderation;
mod oauth;
mod openai;
mod realtime;
mod record;
mod reply;
mod responses;
mod stream;
mod thinking;
mod triton;

use std::error::Error;
use std::future::{Future, IntoFuture};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use axum::{middleware, Router};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Notify;

use crate::conn::{AbortableListener, ConnHandle};
use crate::record::Shared;

const USAGE: &str = "usage: mock-provider [--host 127.0.0.1] [--port 8081]";

/// How long in-flight requests may run after SIGINT/SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Command-line options.
#[derive(Debug, PartialEq)]
struct Args {
    host: String,
    port: u16,
}

/// What the command line asks for.
#[derive(Debug, PartialEq)]
enum Command {
    Serve(Args),
    Help,
}

/// Parses `--host H`, `--port P` (also `--host=H`, `--port=P`) and `--help`.
fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut parsed = Args {
        host: "127.0.0.1".to_owned(),
        port: 8081,
    };
    let Some(flags) = e2e::cli::flags(args)? else {
        return Ok(Command::Help);
    };
    for (flag, value) in flags {
        match flag.as_str() {
            "--host" => parsed.host = value,
            "--port" => parsed.port = e2e::cli::port(&value)?,
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    Ok(Command::Serve(parsed))
}

/// The full router: providers, control endpoints, fallbacks, middleware.
fn app(shared: Arc<Shared>) -> Router {
    Router::new()
        .merge(openai::routes())
        .merge(responses::routes())
        .merge(realtime::routes())
        .merge(anthropic::routes())
        .merge(gemini::routes())
        .merge(bedrock::routes())
        .merge(cohere::routes())
        .merge(dashscope::routes())
        .merge(dashscope_extra::routes())
        .merge(minimax::routes())
        .merge(dify::routes())
        .merge(thinking::routes())
        .merge(triton::routes())
        .merge(moderation::routes())
        .merge(green::routes())
        .merge(oauth::routes())
        .merge(record::routes())
        .fallback(reply::not_found)
        .method_not_allowed_fallback(reply::method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            control::apply,
        ))
        .with_state(shared)
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

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Serve(args)) => args,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return Ok(());
        }
        Err(msg) => {
            eprintln!("mock-provider: {msg}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let shutdown = shutdown_signal()?;
    let listener = TcpListener::bind((args.host.as_str(), args.port)).await?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "mock-provider listening on {addr}")?;
        out.flush()?;
    }

    let stopping = Arc::new(Notify::new());
    let signalled = Arc::clone(&stopping);
    let server = axum::serve(
        AbortableListener(listener),
        app(Arc::new(Shared::default())).into_make_service_with_connect_info::<ConnHandle>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        signalled.notify_one();
    });
    // Graceful shutdown waits for open streams; cap that wait.
    tokio::select! {
        result = server.into_future() => result?,
        () = async {
            stopping.notified().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {}
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
        let serve = |host: &str, port| {
            Ok(Command::Serve(Args {
                host: host.to_owned(),
                port,
            }))
        };
        assert_eq!(parse(&[]), serve("127.0.0.1", 8081));
        assert_eq!(parse(&["--port", "0"]), serve("127.0.0.1", 0));
        assert_eq!(
            parse(&["--host=0.0.0.0", "--port=9000"]),
            serve("0.0.0.0", 9000)
        );
        assert_eq!(parse(&["--help"]), Ok(Command::Help));
        assert!(parse(&["--port"]).is_err());
        assert!(parse(&["--port", "x"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }
}
