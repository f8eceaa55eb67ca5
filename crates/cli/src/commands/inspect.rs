//! `edgerun inspect`: what a model folder holds, stage by stage.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::json;

#[derive(Args)]
pub struct InspectArgs {
    /// A Hugging Face model folder.
    pub model: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: InspectArgs) -> Result<()> {
    let folder = super::open_model(&args.model)?;
    let model = folder.model()?;
    let mut rows = Vec::new();
    for (i, stage) in model.stages().iter().enumerate() {
        let dtypes: BTreeSet<String> = folder.stage_dtypes(i, stage)?.into_iter().collect();
        rows.push((
            stage.id.clone(),
            stage.tensors.len(),
            stage.parameters(),
            folder.read_bytes(i, stage),
            dtypes.into_iter().collect::<Vec<_>>().join(","),
        ));
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let stages: Vec<_> = rows.iter().map(|(id, n, p, b, d)| json!({"id": id, "tensors": n, "parameters": p, "bytes": b, "dtypes": d})).collect();
        let doc = json!({
            "architecture": model.architecture(),
            "parameters": model.parameters(),
            "weight_file_bytes": folder.weight_bytes(),
            "stages": stages,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{}  {} parameters in {} stages, {} bytes of weight files",
        model.architecture(),
        model.parameters(),
        rows.len(),
        folder.weight_bytes()
    )?;
    writeln!(
        out,
        "{:<36} {:>7} {:>12} {:>14}  dtypes",
        "stage", "tensors", "parameters", "bytes"
    )?;
    for (id, n, p, b, d) in rows {
        writeln!(out, "{id:<36} {n:>7} {p:>12} {b:>14}  {d}")?;
    }
    Ok(())
}
