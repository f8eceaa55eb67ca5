//! Split inference: stages `0..K` here, `K..n` on a v2 server, the boundary compressed on the
//! way; and the choice of `K` by Neurosurgeon's rule (Kang et al., ASPLOS 2017): the split
//! that minimises predicted latency, edge compute before it plus the transfer of what crosses
//! plus the server's compute after it.

use edgerun_models::Inputs;
use edgerun_runtime::profile::Profile;
use edgerun_runtime::{Outputs, Session};
use edgerun_tensor::Tensor;
use serde_json::Map;

use crate::boundary::{boundary_to_wire, inputs_to_wire};
use crate::client::Client;
use crate::compress::{Compression, Rest};
use crate::{Result, ServeError};

/// What a split run did.
#[derive(Clone, Debug, Default)]
pub struct SplitReport {
    pub split: usize,
    pub stages: usize,
    /// Local compute of stages `0..split`.
    pub edge_s: f64,
    /// The infer call: upload, the server's stages, download.
    pub remote_s: f64,
    pub sent_bytes: u64,
    pub received_bytes: u64,
}

/// Runs `inputs` with stages `0..split` on `session` and the rest on the model `name` of the
/// server behind `client` (`name/from/split`; `name` itself when `split` is 0). The outputs are
/// in local order: the server's outputs, then the hidden states of both sides renumbered as
/// one pass would number them.
pub fn run_split(
    session: &Session,
    client: &Client,
    name: &str,
    inputs: Inputs,
    split: usize,
    compress: Compression,
    hidden_states: bool,
) -> Result<(Vec<(String, Tensor)>, SplitReport)> {
    let stages = session.model().stages().len();
    let mut report = SplitReport {
        split,
        stages,
        ..SplitReport::default()
    };
    if split > stages {
        return Err(ServeError::bad(format!(
            "split {split} is past the model's {stages} stages"
        )));
    }
    let started = std::time::Instant::now();
    let mut state = session.start(inputs.clone(), hidden_states)?;
    if split == stages {
        session.run_stages(&mut state, 0..stages)?;
        report.edge_s = started.elapsed().as_secs_f64();
        return Ok((Outputs::from_state(&mut state).tensors, report));
    }
    let (tensors, remote) = if split == 0 {
        (inputs_to_wire(&inputs)?, name.to_string())
    } else {
        session.run_stages(&mut state, 0..split)?;
        let boundary = state.take_boundary(split);
        (
            boundary_to_wire(&boundary, compress)?,
            format!("{name}/from/{split}"),
        )
    };
    report.edge_s = started.elapsed().as_secs_f64();
    let local = Outputs::from_state(&mut state).tensors;
    let mut parameters = Map::new();
    if hidden_states {
        parameters.insert("hidden_states".into(), true.into());
    }
    let answer = client.infer(&remote, &tensors, parameters)?;
    report.remote_s = answer.seconds;
    report.sent_bytes = answer.sent_bytes;
    report.received_bytes = answer.received_bytes;
    let mut remote_outputs = Vec::with_capacity(answer.outputs.len());
    for t in answer.outputs {
        let values = t.to_f32()?;
        let tensor = Tensor::from_vec(&t.shape, values).map_err(|e| ServeError::Transport {
            url: client.url().into(),
            why: format!("output {}: {e}", t.name),
        })?;
        remote_outputs.push((t.name, tensor));
    }
    let order: Vec<String> = session
        .model()
        .outputs()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    Ok((merge(local, remote_outputs, &order), report))
}

fn hidden_index(name: &str) -> Option<usize> {
    name.strip_prefix("hidden_states.")?.parse().ok()
}

/// Outputs of both sides in the model's order (`order`), then hidden states: the head's
/// first, the tail's numbered on.
fn merge(
    local: Vec<(String, Tensor)>,
    remote: Vec<(String, Tensor)>,
    order: &[String],
) -> Vec<(String, Tensor)> {
    let (local_hidden, local_out): (Vec<_>, Vec<_>) = local
        .into_iter()
        .partition(|(n, _)| hidden_index(n).is_some());
    let (remote_hidden, remote_out): (Vec<_>, Vec<_>) = remote
        .into_iter()
        .partition(|(n, _)| hidden_index(n).is_some());
    let first = local_hidden.len();
    let mut out = local_out;
    out.extend(remote_out);
    out.sort_by_key(|(n, _)| order.iter().position(|o| o == n).unwrap_or(order.len()));
    out.extend(local_hidden);
    out.extend(remote_hidden.into_iter().map(|(n, t)| {
        let i = hidden_index(&n).unwrap_or(0);
        (format!("hidden_states.{}", first + i), t)
    }));
    out
}

/// Bytes an activation of `elements` values over `channels` channels takes compressed as
/// `how` (the parts' data, its shape counted at rank 4; JSON headers not counted).
pub fn encoded_bytes(how: Compression, elements: u64, channels: u64) -> u64 {
    let channels = channels.clamp(1, elements.max(1));
    let positions = elements / channels;
    match how {
        Compression::None => 4 * elements,
        Compression::F16 => 2 * elements,
        Compression::Int8 => elements + 4 * channels,
        Compression::Channels { share, rest } => {
            let keep = ((f64::from(share) * channels as f64).ceil() as u64).clamp(1, channels);
            let others = channels - keep;
            let index = if channels <= 65536 { 2 } else { 8 };
            let top = positions * keep + keep * (4 + index) + 8 * 4;
            let rest = match rest {
                Rest::Int4 if others > 0 => positions * others.div_ceil(2) + 4 * others,
                Rest::Mean => 2 * others,
                Rest::Int4 => 0,
            };
            top + rest
        }
    }
}

/// A link and a server as the planner sees them.
#[derive(Clone, Copy, Debug)]
pub struct LinkEstimate {
    pub bits_per_s: f64,
    pub round_trip_s: f64,
    /// How many times faster the server computes a stage than the profile says.
    pub server_speedup: f64,
}

/// One candidate split and its predicted latency.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitChoice {
    pub split: usize,
    pub edge_s: f64,
    /// The round trip, the upload of `bytes` and the download of the outputs.
    pub transfer_s: f64,
    pub server_s: f64,
    /// What the split sends (the inputs at 0, the compressed boundary after).
    pub bytes: u64,
}

impl SplitChoice {
    pub fn latency_s(&self) -> f64 {
        self.edge_s + self.transfer_s + self.server_s
    }
}

/// Every split `0..=n` predicted from `profile` (per-unit compute, boundary and output sizes),
/// `input_bytes` (what a split at 0 sends) and `link`; the best is the smallest latency.
pub fn predict_splits(
    profile: &Profile,
    input_bytes: u64,
    compress: Compression,
    link: LinkEstimate,
) -> Result<Vec<SplitChoice>> {
    let n = profile.units.len();
    if let Some(u) = profile.units[..n.saturating_sub(1)]
        .iter()
        .find(|u| u.boundary_elements == 0)
    {
        return Err(ServeError::bad(format!(
            "the profile has no boundary sizes (unit {}): profile the store again with this edgerun",
            u.id
        )));
    }
    if !(link.bits_per_s > 0.0 && link.round_trip_s >= 0.0 && link.server_speedup > 0.0) {
        return Err(ServeError::bad(
            "bandwidth and server speed-up must be positive, the round trip not negative",
        ));
    }
    let compute: Vec<f64> = profile.units.iter().map(|u| u.compute_s).collect();
    Ok((0..=n)
        .map(|k| {
            let edge_s = compute[..k].iter().sum();
            if k == n {
                return SplitChoice {
                    split: k,
                    edge_s,
                    transfer_s: 0.0,
                    server_s: 0.0,
                    bytes: 0,
                };
            }
            let bytes = match k {
                0 => input_bytes,
                _ => {
                    let u = &profile.units[k - 1];
                    encoded_bytes(compress, u.boundary_elements, u.boundary_channels)
                }
            };
            // The outputs come back in f32.
            let both_ways = bytes + 4 * profile.output_elements;
            SplitChoice {
                split: k,
                edge_s,
                transfer_s: link.round_trip_s + both_ways as f64 * 8.0 / link.bits_per_s,
                server_s: compute[k..].iter().sum::<f64>() / link.server_speedup,
                bytes,
            }
        })
        .collect())
}

/// The split of least predicted latency (the earliest among equals).
pub fn best_split(choices: &[SplitChoice]) -> Option<&SplitChoice> {
    choices
        .iter()
        .min_by(|a, b| a.latency_s().total_cmp(&b.latency_s()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compress::encode;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn predicted_bytes_are_the_parts_bytes(
            positions in 1usize..20, channels in 1usize..70, share in 0.01f32..1.0, mean: bool
        ) {
            let values: Vec<f32> = (0..positions * channels).map(|i| (i as f32 * 0.37).sin()).collect();
            let shape = [1, positions, channels];
            let rest = if mean { Rest::Mean } else { Rest::Int4 };
            for how in [Compression::None, Compression::F16, Compression::Int8, Compression::Channels { share, rest }] {
                let parts = encode("hidden", &shape, &values, how).unwrap();
                let sent: usize = parts.iter().map(|p| p.bytes.len()).sum();
                let predicted = encoded_bytes(how, values.len() as u64, channels as u64) as usize;
                // The shape part is counted at rank 4; this one is of rank 3.
                let rank_slack = if matches!(how, Compression::Channels { .. }) { 8 } else { 0 };
                prop_assert_eq!(sent + rank_slack, predicted, "{}", how);
            }
        }
    }

    /// Four units of 100 ms; the activation shrinks to 1/16 after unit 2; inputs 1 MiB.
    fn profile() -> Profile {
        let unit = |i: usize, elements: u64| edgerun_runtime::profile::UnitProfile {
            id: format!("u{i}"),
            resident_bytes: 1,
            read_bytes: 1,
            load_s: 1e-3,
            flops: 0,
            compute_s: 0.100,
            free_s: 0.0,
            boundary_elements: elements,
            boundary_channels: 64,
        };
        Profile {
            architecture: "test".into(),
            threads: 1,
            reserve_bytes: 0,
            units: vec![
                unit(0, 1 << 18),
                unit(1, 1 << 14),
                unit(2, 1 << 18),
                unit(3, 10),
            ],
            throughput: Vec::new(),
            compute_slowdown: Vec::new(),
            output_elements: 10,
        }
    }

    fn best(bits_per_s: f64, server_speedup: f64) -> usize {
        let link = LinkEstimate {
            bits_per_s,
            round_trip_s: 0.002,
            server_speedup,
        };
        let choices = predict_splits(&profile(), 1 << 20, Compression::None, link).unwrap();
        assert_eq!(choices.len(), 5);
        best_split(&choices).unwrap().split
    }

    #[test]
    fn neurosurgeon_picks_the_cloud_the_edge_or_the_narrow_boundary() {
        assert_eq!(
            best(10e9, 10.0),
            0,
            "a fast link to a fast server: send the inputs"
        );
        assert_eq!(best(1e6, 10.0), 4, "a slow link: run everything here");
        // 64 KiB after unit 1 take 52 ms at 10 Mbit/s (274 ms in all), the inputs 839 ms.
        assert_eq!(best(10e6, 10.0), 2);
        let refused = LinkEstimate {
            bits_per_s: 0.0,
            round_trip_s: 0.0,
            server_speedup: 1.0,
        };
        assert!(predict_splits(&profile(), 1, Compression::None, refused).is_err());
    }

    #[test]
    fn merge_numbers_hidden_states_as_one_pass() {
        let t = || Tensor::from_vec(&[1], vec![0.0]).unwrap();
        let local = vec![
            ("hidden_states.0".into(), t()),
            ("hidden_states.1".into(), t()),
        ];
        let local = [local, vec![("aux".into(), t())]].concat();
        let remote = vec![("out".into(), t()), ("hidden_states.0".into(), t())];
        let order = ["out".to_string(), "aux".to_string()];
        let names: Vec<String> = merge(local, remote, &order)
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            [
                "out",
                "aux",
                "hidden_states.0",
                "hidden_states.1",
                "hidden_states.2"
            ]
        );
    }
}
