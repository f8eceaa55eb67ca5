//! The server under load and bad input: 200 requests from several clients with malformed ones
//! interleaved (every good answer right, every bad one a 4xx, the budget held), and each limit
//! (413, 503, 504), a tail-only server, the health and metadata routes.

#[path = "../../runtime/tests/common/mod.rs"]
mod common;
mod support;

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use edgerun_models::{IdTensor, Inputs};
use edgerun_runtime::{Session, SessionOptions, Strategy};
use edgerun_serve::boundary::inputs_to_wire;
use edgerun_serve::client::Client;
use edgerun_serve::server::ServerOptions;
use edgerun_serve::ServeError;

use support::{served, TestServer};

fn tokens(seq: usize, salt: usize) -> Inputs {
    let ids = (0..seq)
        .map(|i| ((i * 31 + salt * 7) % 900) as i64 + 1)
        .collect();
    Inputs {
        input_ids: Some(IdTensor::new(vec![1, seq], ids).unwrap()),
        ..Inputs::default()
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

fn answer(mut response: ureq::http::Response<ureq::Body>) -> (u16, String) {
    let status = response.status().as_u16();
    (
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    )
}

/// A raw POST: the status and the body.
fn post(url: &str, body: &[u8]) -> (u16, String) {
    answer(agent().post(url).send(body).unwrap())
}

fn get(url: &str) -> (u16, String) {
    answer(agent().get(url).call().unwrap())
}

const MALFORMED: [&str; 6] = [
    r#"{"inputs":["#,
    r#"{"inputs":[{"name":"input_ids","shape":[1,1,3],"datatype":"INT64","data":[1,2,3]}]}"#,
    r#"{"inputs":[{"name":"input_ids","shape":[1,3],"datatype":"FP32","data":[1,2,3]}]}"#,
    r#"{"inputs":[{"name":"input_ids","shape":[1,3],"datatype":"INT64","data":[1,2,99999999]}]}"#,
    r#"{"inputs":[{"name":"input_ids","shape":[1,4],"datatype":"INT64","data":[1,2,3]}]}"#,
    r#"{"inputs":[{"name":"pixels","shape":[1],"datatype":"FP32","data":[1]}]}"#,
];

#[test]
fn two_hundred_requests_from_four_clients_with_malformed_ones_interleaved() {
    let Some(root) = common::fixtures() else {
        return;
    };
    let store = common::pack_fixture(&root.join("bert-tiny"), "serve-load");
    let budget = 4 << 20;
    let options = SessionOptions {
        strategy: Strategy::Stream,
        budget: Some(budget),
        ..SessionOptions::default()
    };
    let server = TestServer::start(
        vec![served("bert", &store, options)],
        ServerOptions {
            concurrency: 2,
            queue: 256,
            ..ServerOptions::default()
        },
    );
    let local = Arc::new(Session::open(&store, SessionOptions::default()).unwrap());
    let url = server.url.clone();
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let (url, local) = (url.clone(), Arc::clone(&local));
            std::thread::spawn(move || {
                let client = Client::new(&url, Duration::from_secs(60)).unwrap();
                let (mut good, mut bad) = (0, 0);
                for r in 0..50 {
                    if r % 5 == 4 {
                        let body = MALFORMED[(c + r) % MALFORMED.len()];
                        let (status, text) =
                            post(&format!("{url}/v2/models/bert/infer"), body.as_bytes());
                        assert!((400..500).contains(&status), "{body}: {status} {text}");
                        assert!(text.contains("\"error\""), "{text}");
                        bad += 1;
                        continue;
                    }
                    let inputs = tokens(3 + (c * 50 + r) % 40, c * 50 + r);
                    let want = local.run(inputs.clone(), false).unwrap();
                    let answer = client
                        .infer(
                            "bert",
                            &inputs_to_wire(&inputs).unwrap(),
                            Default::default(),
                        )
                        .unwrap();
                    for (name, tensor) in &want.tensors {
                        let got = answer.outputs.iter().find(|t| &t.name == name).unwrap();
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(got.shape, tensor.shape(), "{name}");
                        assert_eq!(
                            bits(&got.to_f32().unwrap()),
                            bits(tensor.contiguous().values()),
                            "{name}"
                        );
                    }
                    good += 1;
                }
                (good, bad)
            })
        })
        .collect();
    let (mut good, mut bad) = (0, 0);
    for client in clients {
        let (g, b) = client.join().unwrap();
        good += g;
        bad += b;
    }
    assert_eq!((good, bad), (160, 40));
    let (status, stats) = get(&format!("{url}/v2/models/bert/stats"));
    assert_eq!(status, 200);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    let model = &stats["model_stats"][0];
    assert_eq!(model["inference_stats"]["success"]["count"], 160);
    assert_eq!(model["inference_stats"]["fail"]["count"], 40);
    let peak = model["memory"]["governor_peak_bytes"].as_u64().unwrap();
    assert!(
        peak > 0 && peak <= budget,
        "governor peak {peak} over the budget {budget}"
    );
}

fn bert_server(options: ServerOptions) -> Option<TestServer> {
    let root = common::fixtures()?;
    let dir = root.join("bert-tiny");
    Some(TestServer::start(
        vec![served("bert", &dir, SessionOptions::default())],
        options,
    ))
}

fn good_body() -> Vec<u8> {
    br#"{"inputs":[{"name":"input_ids","shape":[1,3],"datatype":"INT64","data":[1,2,3]}]}"#.to_vec()
}

#[test]
fn a_body_over_the_limit_is_413_and_the_server_goes_on() {
    let Some(server) = bert_server(ServerOptions {
        body_limit: 1024,
        ..ServerOptions::default()
    }) else {
        return;
    };
    let infer = format!("{}/v2/models/bert/infer", server.url);
    let mut large = good_body();
    large.resize(4096, b' ');
    let (status, text) = post(&infer, &large);
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("limit"), "{text}");
    assert_eq!(post(&infer, &good_body()).0, 200);
}

#[test]
fn a_request_past_the_timeout_is_504() {
    let Some(server) = bert_server(ServerOptions {
        timeout: Duration::from_millis(200),
        ..ServerOptions::default()
    }) else {
        return;
    };
    // Half a body: the request cannot finish, and the server answers when its time is up.
    let address = server.url.strip_prefix("http://").unwrap();
    let mut slow = std::net::TcpStream::connect(address).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        slow,
        "POST /v2/models/bert/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{{\"inputs\""
    )
    .unwrap();
    let mut answer = [0u8; 12];
    slow.read_exact(&mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 504");
    assert_eq!(
        post(
            &format!("{}/v2/models/bert/infer", server.url),
            &good_body()
        )
        .0,
        200
    );
}

#[test]
fn a_full_queue_answers_503() {
    let Some(server) = bert_server(ServerOptions {
        concurrency: 1,
        queue: 0,
        ..ServerOptions::default()
    }) else {
        return;
    };
    // A request whose body never finishes holds the only slot.
    let address = server.url.strip_prefix("http://").unwrap();
    let mut slow = std::net::TcpStream::connect(address).unwrap();
    write!(
        slow,
        "POST /v2/models/bert/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{{\"inputs\""
    )
    .unwrap();
    slow.flush().unwrap();
    let infer = format!("{}/v2/models/bert/infer", server.url);
    let mut status = 0;
    for _ in 0..100 {
        status = post(&infer, &good_body()).0;
        if status == 503 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(status, 503);
    drop(slow);
    let mut status = 0;
    for _ in 0..100 {
        status = post(&infer, &good_body()).0;
        if status == 200 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        status, 200,
        "the slot is free again once the slow client left"
    );
}

#[test]
fn health_metadata_and_unknown_routes() {
    let Some(server) = bert_server(ServerOptions::default()) else {
        return;
    };
    let url = &server.url;
    assert_eq!(get(&format!("{url}/v2/health/live")).0, 200);
    assert_eq!(get(&format!("{url}/v2/health/ready")).0, 200);
    assert_eq!(get(&format!("{url}/v2/models/bert/ready")).0, 200);
    let client = Client::new(url, Duration::from_secs(10)).unwrap();
    let meta = client.metadata("bert").unwrap();
    let names: Vec<&str> = meta.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["last_hidden_state", "pooler_output"]);
    let tail = client.metadata("bert/from/2").unwrap();
    assert!(tail.inputs.iter().any(|i| i.name == "hidden"));
    for missing in ["nope", "bert/from/9", "bert/from/x"] {
        let (status, text) = get(&format!("{url}/v2/models/{missing}"));
        assert_eq!(status, 404, "{missing}: {text}");
    }
    assert_eq!(get(&format!("{url}/v3/anything")).0, 404);
    match client.infer("nope", &[], Default::default()) {
        Err(ServeError::Server { status: 404, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_tail_only_server_answers_its_tails_only() {
    let Some(root) = common::fixtures() else {
        return;
    };
    let dir = root.join("bert-tiny");
    let options = SessionOptions {
        part: Some(2..4),
        ..SessionOptions::default()
    };
    let server = TestServer::start(
        vec![served("bert", &dir, options)],
        ServerOptions::default(),
    );
    let client = Client::new(&server.url, Duration::from_secs(10)).unwrap();
    for refused in ["bert", "bert/from/1"] {
        assert!(client.metadata(refused).is_err(), "{refused}");
    }
    let inputs = tokens(5, 1);
    let head = Session::open(
        &dir,
        SessionOptions {
            part: Some(0..2),
            ..SessionOptions::default()
        },
    )
    .unwrap();
    let (outputs, _) = edgerun_serve::split::run_split(
        &head,
        &client,
        "bert",
        inputs.clone(),
        2,
        edgerun_serve::Compression::None,
        false,
    )
    .unwrap();
    let local = Session::open(&dir, SessionOptions::default()).unwrap();
    let want = local.run(inputs, false).unwrap();
    for ((n, a), (m, b)) in outputs.iter().zip(&want.tensors) {
        assert_eq!(n, m);
        assert!(a.contiguous().values() == b.contiguous().values(), "{n}");
    }
}
