//! A mix scenario (TOML): the global cap, inferences per model, the read mode, and the models
//! with their importance. Parsed and checked as a whole, before any model is opened.
//!
//! ```toml
//! budget = "843MB"          # the global cap
//! inferences = 3            # per model, unless a model says otherwise
//! io = "direct"             # or "pread"
//! [[model]]
//! name = "segmentation"
//! store = "$MODELS/fcn-resnet101.packed"
//! importance = 1.0
//! input = "pixels.safetensors"             # optional
//! profile = "fcn.profile.json"             # optional
//! ```

use serde::Deserialize;

use crate::size::parse_size;
use crate::{Result, RuntimeError};
use edgerun_store::IoMode;

/// A checked scenario: every model named once, with a positive finite importance and
/// 1..=`MAX_INFERENCES` inferences.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The cap in bytes.
    pub budget: u64,
    pub io: IoMode,
    pub models: Vec<ScenarioModel>,
}

/// One `[[model]]` table, its inferences resolved against the scenario's.
#[derive(Clone, Debug)]
pub struct ScenarioModel {
    pub name: String,
    /// As written: the caller resolves it (`$MODELS/`, relative to the scenario file).
    pub store: String,
    pub importance: f64,
    pub inferences: usize,
    pub input: Option<String>,
    pub profile: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    budget: String,
    #[serde(default = "one")]
    inferences: usize,
    #[serde(default)]
    io: Option<String>,
    #[serde(default)]
    model: Vec<RawModel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: String,
    store: String,
    #[serde(default = "unit_weight")]
    importance: f64,
    inferences: Option<usize>,
    input: Option<String>,
    profile: Option<String>,
}

fn one() -> usize {
    1
}

fn unit_weight() -> f64 {
    1.0
}

impl Scenario {
    /// Parses and checks a scenario's text.
    pub fn parse(text: &str) -> Result<Self> {
        let raw: RawScenario =
            toml::from_str(text).map_err(|e| RuntimeError::Scenario(e.to_string()))?;
        let budget =
            parse_size(&raw.budget).map_err(|e| RuntimeError::Scenario(format!("budget: {e}")))?;
        let io = match raw.io.as_deref() {
            None | Some("direct") => IoMode::Direct,
            Some("pread") => IoMode::Pread,
            Some(other) => {
                return Err(RuntimeError::Scenario(format!(
                    "io = {other:?}: choose \"direct\" or \"pread\""
                )))
            }
        };
        let models: Vec<ScenarioModel> = raw
            .model
            .into_iter()
            .map(|m| ScenarioModel {
                name: m.name,
                store: m.store,
                importance: m.importance,
                inferences: m.inferences.unwrap_or(raw.inferences),
                input: m.input,
                profile: m.profile,
            })
            .collect();
        super::check_entries(
            models
                .iter()
                .map(|m| (m.name.as_str(), m.importance, m.inferences)),
        )?;
        Ok(Self { budget, io, models })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scenario_resolves_inferences_and_reads_its_budget_exactly() {
        let s = Scenario::parse(
            "budget = \"1.5GiB\"\ninferences = 3\nio = \"pread\"\n\
             [[model]]\nname = \"a\"\nstore = \"a.packed\"\n\
             [[model]]\nname = \"b\"\nstore = \"b.packed\"\ninferences = 1\nimportance = 2.5\n",
        )
        .unwrap();
        assert_eq!(s.budget, 3 << 29);
        assert_eq!(s.io, IoMode::Pread);
        assert_eq!(
            s.models.iter().map(|m| m.inferences).collect::<Vec<_>>(),
            [3, 1]
        );
        assert_eq!(s.models[1].importance, 2.5);
    }

    #[test]
    fn bad_scenarios_are_errors() {
        let model = "[[model]]\nname = \"a\"\nstore = \"a\"\n";
        for text in [
            String::new(),
            "budget = \"1MiB\"\n".to_string(),
            format!("budget = \"1MiB\"\nbudgt = 3\n{model}"),
            format!("budget = \"lots\"\n{model}"),
            format!("budget = \"1MiB\"\nio = \"mmap\"\n{model}"),
            format!("budget = \"1MiB\"\ninferences = 0\n{model}"),
            format!("budget = \"1MiB\"\ninferences = -1\n{model}"),
            format!("budget = \"1MiB\"\n{model}importance = nan\n"),
            format!("budget = \"1MiB\"\n{model}{model}"),
        ] {
            assert!(Scenario::parse(&text).is_err(), "accepted: {text}");
        }
    }
}
