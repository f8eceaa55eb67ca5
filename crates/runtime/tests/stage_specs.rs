//! Every stage reads exactly the tensors its spec names, on every fixture: a spec list that
//! drifted from its forward (a tensor named but never read, or read but not named and so
//! never loaded by a streaming strategy) fails here.

mod common;

use std::collections::BTreeSet;

use common::{fixtures, FIXTURES};
use edgerun_models::{ReadLog, RunOptions};
use edgerun_runtime::{run_pass, Bound, Delivery, Executor, Feed, FullExecutor, Result};
use edgerun_store::{read_inputs, ModelSource};

/// Hands out recording handles on resident weights and keeps each stage's log.
struct Recording<'w> {
    units: &'w [edgerun_models::UnitWeights],
    logs: Vec<ReadLog>,
}

impl<'w> Feed<'w> for Recording<'w> {
    fn take(&mut self, index: usize) -> Result<Bound<'w>> {
        let (weights, log) = self.units[index].recording();
        self.logs.push(log);
        Ok(Bound::owned(weights, None, Delivery::default()))
    }
}

#[test]
fn every_stage_reads_exactly_its_spec() {
    let Some(root) = fixtures() else { return };
    let all = FIXTURES
        .iter()
        .map(|name| root.join(name))
        .chain(std::iter::once(common::repo_fixtures().join("yolov3-tiny")));
    for dir in all {
        let full = FullExecutor::load(&ModelSource::open(&dir).unwrap()).unwrap();
        let model = full.model();
        let inputs = read_inputs(&dir.join("inputs.safetensors")).unwrap();
        let mut state = model.start(inputs, RunOptions::default()).unwrap();
        let mut feed = Recording {
            units: full.weights(),
            logs: Vec::new(),
        };
        run_pass(model, &mut state, &mut feed).unwrap();
        assert_eq!(feed.logs.len(), model.stages().len());
        for (stage, log) in model.stages().iter().zip(&feed.logs) {
            let spec: BTreeSet<String> = stage.tensors.iter().map(|t| t.name.clone()).collect();
            assert_eq!(log.names(), spec, "{}: stage {}", dir.display(), stage.id);
        }
    }
}
