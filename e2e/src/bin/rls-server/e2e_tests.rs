use std::net::SocketAddr;
use std::process::{Child, Command as Process, Stdio};
use std::time::Instant;

use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic_prost::ProstCodec;

use super::*;
use crate::proto::{
    Code, Entry, RateLimitDescriptor, RateLimitRequest, RateLimitResponse, Unit,
    SHOULD_RATE_LIMIT_PATH,
};

/// A `redis-server` on a free port, killed on drop.
struct Redis {
    child: Child,
    url: String,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts `redis-server`, or `None` when it is not installed.
fn start_redis() -> Option<Redis> {
    let port = free_port();
    let child = Process::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("cannot start redis-server: {e}"),
    };
    let redis = Redis {
        child,
        url: format!("redis://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not come up");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(redis)
}

/// Starts a server against `redis` on an ephemeral port.
async fn start_server(redis: &str) -> SocketAddr {
    let limiter = Arc::new(Limiter::connect(redis).await.unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve(listener, limiter, std::future::pending()));
    addr
}

struct Client(tonic::client::Grpc<Channel>);

impl Client {
    async fn connect(addr: SocketAddr) -> Self {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self(tonic::client::Grpc::new(channel))
    }

    async fn call_path(
        &mut self,
        path: &'static str,
        req: RateLimitRequest,
    ) -> Result<RateLimitResponse, tonic::Status> {
        self.0.ready().await.unwrap();
        self.0
            .unary(
                tonic::Request::new(req),
                PathAndQuery::from_static(path),
                ProstCodec::<RateLimitRequest, RateLimitResponse>::default(),
            )
            .await
            .map(tonic::Response::into_inner)
    }

    async fn call(&mut self, req: RateLimitRequest) -> Result<RateLimitResponse, tonic::Status> {
        self.call_path(SHOULD_RATE_LIMIT_PATH, req).await
    }

    /// Calls and returns (overall code, [(code, remaining)] per descriptor).
    async fn check(&mut self, req: RateLimitRequest) -> (Code, Vec<(Code, u32)>) {
        let resp = self.call(req).await.unwrap();
        let codes = resp
            .statuses
            .iter()
            .map(|s| (Code::try_from(s.code).unwrap(), s.limit_remaining))
            .collect();
        (Code::try_from(resp.overall_code).unwrap(), codes)
    }
}

fn desc(entries: &[(&str, &str)]) -> RateLimitDescriptor {
    RateLimitDescriptor {
        entries: entries
            .iter()
            .map(|(k, v)| Entry {
                key: (*k).into(),
                value: (*v).into(),
            })
            .collect(),
    }
}

fn request(domain: &str, hits: u32, descriptors: Vec<RateLimitDescriptor>) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.into(),
        descriptors,
        hits_addend: hits,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_envoy_rate_limits_from_shared_redis() {
    let Some(redis) = start_redis() else {
        println!("skipped: redis-server is not installed");
        return;
    };
    let (a, b) = (
        start_server(&redis.url).await,
        start_server(&redis.url).await,
    );
    let mut clients = [Client::connect(a).await, Client::connect(b).await];

    // Two servers, one budget: 5 per minute for alice, alternating servers.
    let alice = || {
        request(
            "shared",
            0,
            vec![desc(&[("user", "alice"), ("limit", "5/60")])],
        )
    };
    for (i, left) in [4, 3, 2, 1, 0].into_iter().enumerate() {
        let got = clients[i % 2].check(alice()).await;
        assert_eq!(got, (Code::Ok, vec![(Code::Ok, left)]), "call {i}");
    }
    for i in 0..2 {
        let got = clients[i % 2].check(alice()).await;
        assert_eq!(got, (Code::OverLimit, vec![(Code::OverLimit, 0)]));
    }
    let resp = clients[0].call(alice()).await.unwrap();
    let status = &resp.statuses[0];
    let limit = status.current_limit.clone().unwrap();
    assert_eq!(
        (limit.requests_per_unit, limit.unit, limit.name.as_str()),
        (5, Unit::Minute as i32, "user")
    );
    let reset = status.duration_until_reset.unwrap();
    assert!(
        reset.seconds <= 60 && (reset.seconds, reset.nanos) > (0, 0),
        "{reset:?}"
    );

    // Other users, domains and windows have their own counters.
    let bob = request(
        "shared",
        1,
        vec![desc(&[("user", "bob"), ("limit", "5/60")])],
    );
    assert_eq!(clients[1].check(bob).await, (Code::Ok, vec![(Code::Ok, 4)]));
    let other = request(
        "other",
        1,
        vec![desc(&[("user", "alice"), ("limit", "5/60")])],
    );
    assert_eq!(
        clients[1].check(other).await,
        (Code::Ok, vec![(Code::Ok, 4)])
    );
    let hourly = request(
        "shared",
        1,
        vec![desc(&[("user", "alice"), ("limit", "5/3600")])],
    );
    assert_eq!(
        clients[1].check(hourly).await,
        (Code::Ok, vec![(Code::Ok, 4)])
    );
    // A descriptor keyed by more entries is not counted by a narrower one.
    let wider = request(
        "shared",
        1,
        vec![desc(&[
            ("user", "alice"),
            ("model", "m"),
            ("limit", "5/60"),
        ])],
    );
    assert_eq!(
        clients[0].check(wider).await,
        (Code::Ok, vec![(Code::Ok, 4)])
    );

    // hits_addend: a request too big is refused and not counted.
    let tokens = |hits| request("hits", hits, vec![desc(&[("k", "v"), ("limit", "10/60")])]);
    assert_eq!(
        clients[0].check(tokens(3)).await,
        (Code::Ok, vec![(Code::Ok, 7)])
    );
    assert_eq!(
        clients[1].check(tokens(8)).await,
        (Code::OverLimit, vec![(Code::OverLimit, 7)])
    );
    assert_eq!(
        clients[0].check(tokens(7)).await,
        (Code::Ok, vec![(Code::Ok, 0)])
    );

    // Several descriptors: all are counted, or none.
    let both = || {
        request(
            "multi",
            1,
            vec![
                desc(&[("a", "1"), ("limit", "100/60")]),
                desc(&[("b", "1"), ("limit", "1/60")]),
                desc(&[("no", "limit")]),
            ],
        )
    };
    assert_eq!(
        clients[0].check(both()).await,
        (Code::Ok, vec![(Code::Ok, 99), (Code::Ok, 0), (Code::Ok, 0)])
    );
    assert_eq!(
        clients[1].check(both()).await,
        (
            Code::OverLimit,
            vec![(Code::Ok, 99), (Code::OverLimit, 0), (Code::Ok, 0)]
        )
    );
    let only_a = request("multi", 1, vec![desc(&[("a", "1"), ("limit", "100/60")])]);
    assert_eq!(
        clients[0].check(only_a).await,
        (Code::Ok, vec![(Code::Ok, 98)])
    );

    // No limit entry: allowed, status without a limit.
    let free = clients[0]
        .call(request("free", 1, vec![desc(&[("user", "x")])]))
        .await
        .unwrap();
    assert_eq!(free.overall_code, Code::Ok as i32);
    assert_eq!(free.statuses[0].current_limit, None);

    // The window resets.
    let second = || request("reset", 1, vec![desc(&[("limit", "1/1")])]);
    assert_eq!(clients[0].check(second()).await.0, Code::Ok);
    assert_eq!(clients[1].check(second()).await.0, Code::OverLimit);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(clients[1].check(second()).await.0, Code::Ok);

    // Concurrent calls through both servers never overshoot.
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..40 {
        let addr = if i % 2 == 0 { a } else { b };
        calls.spawn(async move {
            let mut client = Client::connect(addr).await;
            let req = request("burst", 1, vec![desc(&[("limit", "10/60")])]);
            client.check(req).await.0
        });
    }
    let mut admitted = 0;
    while let Some(code) = calls.join_next().await {
        if code.unwrap() == Code::Ok {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 10);

    // Bad calls.
    let bad = request("bad", 1, vec![desc(&[("limit", "ten/60")])]);
    let err = clients[0].call(bad).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let nameless = request("", 1, vec![desc(&[("limit", "1/60")])]);
    let err = clients[0].call(nameless).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = clients[0]
        .call_path(
            "/envoy.service.ratelimit.v3.RateLimitService/Other",
            alice(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
}

#[tokio::test]
async fn refuses_to_start_without_redis() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let started = Instant::now();
    let err = Limiter::connect(&url).await.err().unwrap();
    assert!(err.contains("cannot reach Redis"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
