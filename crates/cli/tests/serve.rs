//! `edgerun serve` as a process: `--port 0` prints the address, a real v2 client
//! (tritonclient) gets `edgerun run`'s outputs, SIGTERM drains an in-flight request and exits 0,
//! bad flags are refused before anything listens.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Scratch;

const CONFIG: &str = r#"{"model_type": "bert", "architectures": ["BertModel"], "vocab_size": 50,
  "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 16,
  "max_position_embeddings": 16, "type_vocab_size": 2, "hidden_act": "gelu"}"#;

fn tiny_bert(dir: &Path) -> PathBuf {
    let model = dir.join("bert");
    common::write_model(&model, CONFIG, &|n| n == "pooler.dense.weight");
    let ids = edgerun_models::IdTensor::new(vec![1, 5], vec![1, 2, 3, 4, 5]).unwrap();
    edgerun_store::write_tensors(
        &dir.join("inputs.safetensors"),
        &[("input_ids".into(), edgerun_store::OutputTensor::I64(ids))],
    )
    .unwrap();
    model
}

/// A running server and its address; killed if the test ends early.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgerun"))
            .arg("serve")
            .args(args)
            .args(["--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("no address printed: {line:?}"))
            .to_string();
        Self { child, url }
    }

    fn address(&self) -> &str {
        self.url.strip_prefix("http://").unwrap()
    }

    /// Sends `signal` and waits for the exit status (at most 30 s).
    fn stop(&mut self, signal: i32) -> std::process::ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sigterm_drains_the_request_in_flight_and_exits_0() {
    let scratch = Scratch::new("serve-drain");
    let model = tiny_bert(&scratch.0);
    let spec = format!("{}=bert", model.display());
    let mut server = Server::start(&[&spec]);
    let body =
        br#"{"inputs":[{"name":"input_ids","shape":[1,3],"datatype":"INT64","data":[1,2,3]}]}"#;
    let mut stream = std::net::TcpStream::connect(server.address()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "POST /v2/models/bert/infer HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(&body[..10]).unwrap();
    stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: kill(2) on our own child's pid.
    unsafe {
        libc::kill(server.child.id() as i32, libc::SIGTERM);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server exited with a request in flight"
    );
    stream.write_all(&body[10..]).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("last_hidden_state"), "{answer}");
    let status = server.stop(libc::SIGTERM);
    assert!(status.success(), "exit status {status}");
}

#[test]
fn sigint_with_nothing_in_flight_exits_0() {
    let scratch = Scratch::new("serve-sigint");
    let model = tiny_bert(&scratch.0);
    let mut server = Server::start(&[model.to_str().unwrap()]);
    let status = server.stop(libc::SIGINT);
    assert!(status.success(), "exit status {status}");
}

#[test]
fn bad_serve_flags_are_refused_before_listening() {
    let scratch = Scratch::new("serve-flags");
    let model = tiny_bert(&scratch.0);
    let m = model.to_str().unwrap();
    let named = format!("{m}=a b");
    let tail = format!("{m}=bert/from/9");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["/nonexistent/model"], "cannot open model"),
        (vec![&named], "model name"),
        (vec![&tail], "tail starts at a stage"),
        (vec![m, m], "two models are named"),
        (vec![m, "--timeout", "0"], "--timeout"),
        (
            vec![m, "--report", "/tmp/x.json"],
            "--report is for one run",
        ),
        (vec![m, "--budget", "1MiB"], "packed store"),
        (vec![m, "--listen", "256.0.0.1:1"], "invalid"),
    ];
    for (args, needle) in cases {
        let mut all = vec!["serve"];
        all.extend(&args);
        let output = common::edgerun(&all);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn offload_flags_without_a_server_are_refused() {
    let scratch = Scratch::new("offload-flags");
    let model = tiny_bert(&scratch.0);
    let m = model.to_str().unwrap();
    let input = scratch.path("inputs.safetensors");
    let out = scratch.path("out.safetensors");
    let (i, o) = (input.to_str().unwrap(), out.to_str().unwrap());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--compress", "int8"], "need --offload"),
        (
            vec!["--offload", "https://x:1", "--split", "1"],
            "plain HTTP",
        ),
        (
            vec!["--offload", "http://127.0.0.1:1", "--split", "9"],
            "stages",
        ),
        (
            vec!["--offload", "http://127.0.0.1:1", "--split", "x"],
            "a stage or auto",
        ),
        (
            vec![
                "--offload",
                "http://127.0.0.1:1",
                "--compress",
                "channels=2",
            ],
            "channels=R",
        ),
        (vec!["--offload", "http://127.0.0.1:1"], "--profile"),
        (
            vec!["--offload", "http://127.0.0.1:1", "--split", "1"],
            "127.0.0.1:1",
        ),
    ];
    for (extra, needle) in cases {
        let mut all = vec!["run", m, "--input", i, "--output", o];
        all.extend(&extra);
        let output = common::edgerun(&all);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{extra:?} was accepted");
        assert!(stderr.contains(needle), "{extra:?}: {stderr}");
        assert!(!out.exists(), "{extra:?} left an output");
    }
}

/// A Python with tritonclient[http] and numpy (`scripts/python-env.sh` makes one).
fn python() -> Option<PathBuf> {
    let python = std::env::var_os("EDGERUN_PYTHON").map(PathBuf::from);
    let usable = python.as_ref().is_some_and(|p| {
        Command::new(p)
            .args(["-c", "import tritonclient.http, numpy"])
            .status()
            .is_ok_and(|s| s.success())
    });
    if usable {
        return python;
    }
    if std::env::var_os("EDGERUN_REQUIRE_TRITON").is_some() {
        panic!("EDGERUN_REQUIRE_TRITON is set but EDGERUN_PYTHON has no tritonclient (run scripts/python-env.sh)");
    }
    eprintln!("skipping: no EDGERUN_PYTHON with tritonclient[http] (scripts/python-env.sh)");
    None
}

#[test]
fn tritonclient_gets_the_outputs_of_edgerun_run() {
    let Some(python) = python() else { return };
    let scratch = Scratch::new("serve-triton");
    let model = tiny_bert(&scratch.0);
    let input = scratch.path("inputs.safetensors");
    let expected = scratch.path("expected.safetensors");
    let (m, i, e) = (
        model.to_str().unwrap(),
        input.to_str().unwrap(),
        expected.to_str().unwrap(),
    );
    let run = common::edgerun(&["run", m, "--input", i, "--output", e]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let spec = format!("{m}=bert");
    let mut server = Server::start(&[&spec]);
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/triton_client.py");
    let output = Command::new(python)
        .arg(script)
        .args([&server.url, "bert", i, e])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("equal edgerun run's"), "{stdout}");
    assert!(server.stop(libc::SIGTERM).success());
}
