//! Under a real cgroup v1 memory cap (as root; skipped with a message otherwise): GPT-2
//! (f32, 622 MiB packed) streamed with a 330 MiB budget inside a 360 MiB cgroup is not
//! OOM-killed and writes the same bytes as an uncapped run, while loading it whole under the
//! same cap is killed, so the cap really binds.

use std::path::{Path, PathBuf};
use std::process::Command;

use edgerun_models::IdTensor;
use edgerun_store::{write_tensors, OutputTensor};

const CGROUP_ROOT: &str = "/sys/fs/cgroup/memory";
const CAP_BYTES: u64 = 360 << 20;

fn edgerun() -> Command {
    Command::new(env!("CARGO_BIN_EXE_edgerun"))
}

fn cgroups_writable() -> bool {
    let probe = Path::new(CGROUP_ROOT).join(format!("edgerun-probe-{}", std::process::id()));
    let ok = std::fs::create_dir(&probe).is_ok();
    let _ = std::fs::remove_dir(&probe);
    ok
}

struct Cgroup(PathBuf);

impl Cgroup {
    fn new(limit: u64) -> Self {
        let dir = Path::new(CGROUP_ROOT).join(format!("edgerun-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("memory.limit_in_bytes"), limit.to_string()).unwrap();
        Self(dir)
    }

    /// Runs `args` inside the cgroup: the shell joins it, then execs edgerun.
    fn run(&self, args: &[&str]) -> std::process::ExitStatus {
        let procs = self.0.join("cgroup.procs");
        let script = format!("echo $$ > {} && exec \"$0\" \"$@\"", procs.display());
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(env!("CARGO_BIN_EXE_edgerun"))
            .args(args)
            .status()
            .unwrap()
    }

    fn oom_kills(&self) -> u64 {
        std::fs::read_to_string(self.0.join("memory.oom_control"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn streaming_survives_a_cap_that_kills_loading_everything() {
    if !cgroups_writable() {
        eprintln!("skipping: {CGROUP_ROOT} is not writable (needs root and cgroup v1)");
        return;
    }
    let work = std::env::temp_dir().join(format!("edgerun-cap-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let (hf, packed) = (work.join("gpt2"), work.join("gpt2-packed"));
    assert!(edgerun()
        .args(["synth", "--arch", "gpt2", "--out", hf.to_str().unwrap()])
        .status()
        .unwrap()
        .success());
    assert!(edgerun()
        .args(["pack", hf.to_str().unwrap(), packed.to_str().unwrap()])
        .status()
        .unwrap()
        .success());
    let input = work.join("ids.safetensors");
    let ids = IdTensor::new(vec![1, 16], (0..16).map(|i| 100 + i * 37).collect()).unwrap();
    write_tensors(&input, &[("input_ids".into(), OutputTensor::I64(ids))]).unwrap();
    let run = |out: &Path, strategy: &str, budget: Option<&str>| -> Vec<String> {
        let mut args = vec![
            "run".to_string(),
            packed.display().to_string(),
            "--input".into(),
            input.display().to_string(),
            "--output".into(),
            out.display().to_string(),
            "--strategy".into(),
            strategy.into(),
        ];
        if let Some(b) = budget {
            args.extend(["--budget".into(), b.into()]);
        }
        args
    };

    let reference = work.join("reference.safetensors");
    let args = run(&reference, "full", None);
    assert!(edgerun().args(&args).status().unwrap().success());

    let cgroup = Cgroup::new(CAP_BYTES);
    let capped = work.join("capped.safetensors");
    let args = run(&capped, "stream", Some("330MiB"));
    let status = cgroup.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        status.success(),
        "streamed run under the cap failed: {status}"
    );
    assert_eq!(cgroup.oom_kills(), 0, "the streamed run was OOM-killed");
    assert_eq!(
        std::fs::read(&capped).unwrap(),
        std::fs::read(&reference).unwrap(),
        "capped output differs"
    );

    let whole = work.join("whole.safetensors");
    let args = run(&whole, "full", None);
    let status = cgroup.run(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(
        !status.success(),
        "loading 622 MiB under a 360 MiB cap should fail"
    );
    assert!(
        cgroup.oom_kills() >= 1,
        "the full run failed without an OOM kill: {status}"
    );
    drop(cgroup);
    std::fs::remove_dir_all(&work).unwrap();
}
