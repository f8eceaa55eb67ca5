//! `run --offload URL`: the stages from the split on run on a v2 server (edgerun serve, or a
//! Triton or KServe deployment of the same tail), the boundary compressed on the way.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use edgerun_models::{Inputs, Model};
use edgerun_serve::boundary::inputs_to_wire;
use edgerun_serve::client::{Client, LinkModel};
use edgerun_serve::split::{best_split, predict_splits, LinkEstimate};
use edgerun_serve::Compression;

use super::link::{parse_link, parse_rate};

#[derive(Args, Clone, Debug)]
pub struct OffloadArgs {
    /// Run the stages from --split on on the v2 server at this URL (http://HOST:PORT).
    #[arg(long, value_name = "URL")]
    pub offload: Option<String>,
    /// Where to split: a stage K (0 sends the inputs; the stage count runs everything here),
    /// or auto: the least predicted latency by Neurosurgeon's rule from --profile (per-unit
    /// compute and boundary sizes), --bandwidth and the measured round trip.
    #[arg(long, default_value = "auto", value_name = "K|auto")]
    pub split: String,
    /// How the boundary travels: none (bit-identical outputs), f16, int8 (a scale per
    /// channel), channels=R (the top R share of channels by importance in int8, the rest in
    /// int4) or channels=R:mean (the rest as their mean only).
    #[arg(long, default_value = "none")]
    pub compress: Compression,
    /// The served model's name (default: MODEL's folder name).
    #[arg(long, value_name = "NAME")]
    pub remote_model: Option<String>,
    /// The link's rate for --split auto, e.g. 8Mbit, 500kbit.
    #[arg(long, value_parser = parse_rate, value_name = "RATE")]
    pub bandwidth: Option<f64>,
    /// How many times faster the server computes a stage than --profile says (--split auto).
    #[arg(long, default_value_t = 1.0)]
    pub server_speedup: f64,
    /// Model the link in the client: every call takes at least its bytes at RATE plus twice
    /// DELAY ms, e.g. 2Mbit/20ms (where tc and network namespaces are not available).
    #[arg(long, value_parser = parse_link, value_name = "RATE[/DELAY]")]
    pub emulate_link: Option<LinkModel>,
    /// Seconds a call to the server may take.
    #[arg(long, default_value_t = 120.0)]
    pub offload_timeout: f64,
}

/// The split chosen, and the client to run it with.
pub struct Offload {
    pub client: Client,
    pub name: String,
    pub split: usize,
}

impl OffloadArgs {
    /// Refuses offload flags without --offload.
    pub fn check(&self) -> Result<()> {
        if self.offload.is_none() {
            let given = self.split != "auto"
                || self.compress != Compression::None
                || self.remote_model.is_some()
                || self.bandwidth.is_some()
                || self.emulate_link.is_some();
            if given {
                bail!("--split, --compress, --remote-model, --bandwidth and --emulate-link need --offload URL");
            }
        }
        if !(self.server_speedup.is_finite() && self.server_speedup > 0.0) {
            bail!("--server-speedup must be a positive number");
        }
        if !(self.offload_timeout.is_finite() && self.offload_timeout > 0.0) {
            bail!("--offload-timeout must be a positive number of seconds");
        }
        Ok(())
    }

    /// The client and the split, when --offload is given.
    pub fn plan(
        &self,
        model_path: &std::path::Path,
        model: &dyn Model,
        inputs: &Inputs,
        profile: Option<&std::path::Path>,
    ) -> Result<Option<Offload>> {
        let Some(url) = &self.offload else {
            return Ok(None);
        };
        let mut client = Client::new(url, Duration::from_secs_f64(self.offload_timeout))?;
        if let Some(link) = self.emulate_link {
            client = client.with_link(link);
        }
        let name = match &self.remote_model {
            Some(name) => name.clone(),
            None => model_path
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)
                .context("name the served model with --remote-model")?,
        };
        let stages = model.stages().len();
        let split = if self.split == "auto" {
            self.auto_split(&client, model, inputs, profile)?
        } else {
            let k: usize = self
                .split
                .parse()
                .with_context(|| format!("--split {:?}: expected a stage or auto", self.split))?;
            if k > stages {
                bail!("--split {k}: the model has {stages} stages (0 to {stages})");
            }
            k
        };
        Ok(Some(Offload {
            client,
            name,
            split,
        }))
    }

    fn auto_split(
        &self,
        client: &Client,
        model: &dyn Model,
        inputs: &Inputs,
        profile: Option<&std::path::Path>,
    ) -> Result<usize> {
        let path = profile.context(
            "--split auto predicts from a profile: give --profile (edgerun profile STORE --output P)",
        )?;
        let profile = super::profile::load_profile(path, Some(model))?;
        let bits_per_s = self
            .bandwidth
            .context("--split auto needs the link's rate: give --bandwidth (e.g. 8Mbit)")?;
        let round_trip_s = client
            .round_trip(5)
            .context("cannot reach the server to time the round trip")?;
        let input_bytes = inputs_to_wire(inputs)?
            .iter()
            .map(|t| t.bytes.len() as u64)
            .sum();
        let link = LinkEstimate {
            bits_per_s,
            round_trip_s,
            server_speedup: self.server_speedup,
        };
        let choices = predict_splits(&profile, input_bytes, self.compress, link)?;
        let best = best_split(&choices).context("no split to choose from")?;
        eprintln!(
            "split auto: stage {} of {} (predicted {:.1} ms: edge {:.1}, transfer {:.1} of {} bytes at {:.2} Mbit/s and {:.1} ms round trip, server {:.1}); all here {:.1} ms, all there {:.1} ms",
            best.split,
            choices.len() - 1,
            best.latency_s() * 1e3,
            best.edge_s * 1e3,
            best.transfer_s * 1e3,
            best.bytes,
            bits_per_s / 1e6,
            round_trip_s * 1e3,
            best.server_s * 1e3,
            choices.last().map_or(0.0, |c| c.latency_s() * 1e3),
            choices.first().map_or(0.0, |c| c.latency_s() * 1e3),
        );
        Ok(best.split)
    }
}
