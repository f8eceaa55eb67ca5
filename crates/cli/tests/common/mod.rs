//! Tiny models the CLI tests write themselves, so they run without ../shared.

#![allow(dead_code)]

use std::path::Path;

use edgerun_models::build_model;
use edgerun_store::{write_tensors, OutputTensor};
use edgerun_tensor::Tensor;

/// Writes `config` and a model.safetensors with small deterministic values for every tensor
/// the family names; `has_tensor` picks prefixes and heads as a checkpoint's names would.
pub fn write_model(dir: &Path, config: &str, has_tensor: &dyn Fn(&str) -> bool) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), config).unwrap();
    write_tensors(
        &dir.join("model.safetensors"),
        &model_tensors(config, has_tensor),
    )
    .unwrap();
}

/// The tensors `write_model` saves, by name, once each.
pub fn model_tensors(
    config: &str,
    has_tensor: &dyn Fn(&str) -> bool,
) -> Vec<(String, OutputTensor)> {
    let model = build_model(
        config,
        edgerun_models::Checkpoint {
            has_tensor,
            tensors: None,
        },
    )
    .unwrap();
    let mut seen = std::collections::HashSet::new();
    model
        .stages()
        .iter()
        .flat_map(|s| &s.tensors)
        .filter(|t| seen.insert(t.name.clone()))
        .map(|t| {
            let values = (0..t.elements())
                .map(|i| ((i * 37 % 101) as f32 - 50.0) / 500.0)
                .collect();
            (
                t.name.clone(),
                OutputTensor::F32(Tensor::from_vec(&t.shape, values).unwrap()),
            )
        })
        .collect()
}

/// A scratch folder under the system's temporary directory, removed when dropped.
pub struct Scratch(pub std::path::PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("edgerun-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Longest any refusal may take: bad input fails within seconds, never by exhausting memory.
const REFUSAL_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs the binary with `args`, killing it (and failing the test) past `REFUSAL_DEADLINE`.
pub fn edgerun(args: &[&str]) -> std::process::Output {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgerun"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drained on threads so that a chatty child never blocks on a full pipe.
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.read_to_end(&mut bytes).map(|_| bytes)
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > REFUSAL_DEADLINE {
            let _ = child.kill();
            panic!("edgerun {args:?} still running after {REFUSAL_DEADLINE:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: stdout.join().unwrap().unwrap(),
        stderr: stderr.join().unwrap().unwrap(),
    }
}

/// Runs the binary and asserts it succeeded.
pub fn ok(args: &[&str]) -> std::process::Output {
    let out = edgerun(args);
    assert!(
        out.status.success(),
        "edgerun {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs the binary and asserts a clean refusal containing `needle`: exit 1 with one `error:`
/// line, or clap's usage error (exit 2, an `error:` line and a pointer to `--help`), and no
/// panic. Returns stderr.
pub fn refused(args: &[&str], needle: &str) -> String {
    let out = edgerun(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.is_empty()).collect();
    match out.status.code() {
        Some(1) => assert_eq!(lines.len(), 1, "one line expected: {stderr}"),
        Some(2) => assert!(
            lines.last().is_some_and(|l| l.contains("--help")),
            "{stderr}"
        ),
        _ => panic!("edgerun {args:?} exited {:?}: {stderr}", out.status),
    }
    assert!(
        lines.first().is_some_and(|l| l.starts_with("error: ")),
        "{stderr}"
    );
    assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    stderr
}
