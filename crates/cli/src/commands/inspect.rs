//! `edgerun inspect`: what a model folder or packed store holds, stage by stage, and with
//! `--tensors` tensor by tensor (dtype, shape, bytes; for quantised matrices the group size and
//! the scales).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use edgerun_store::ModelSource;
use serde_json::json;

#[derive(Args)]
pub struct InspectArgs {
    /// A Hugging Face model folder or a packed store.
    pub model: PathBuf,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// List every tensor of a packed store: dtype, shape, bytes, and for int8/q4 matrices
    /// their [in, out] matrix, the inputs per scale and the scales' bytes.
    #[arg(long)]
    pub tensors: bool,
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
    let tensors = tensor_rows(&folder);
    if args.tensors && tensors.is_empty() {
        anyhow::bail!(
            "--tensors lists a packed store's tensors; {} is a Hugging Face folder (pack it first)",
            args.model.display()
        );
    }
    // Bytes per stored dtype, over every tensor of a packed store.
    let mut by_dtype: BTreeMap<&str, u64> = BTreeMap::new();
    for t in &tensors {
        *by_dtype.entry(t.dtype).or_default() += t.bytes;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let stages: Vec<_> = rows.iter().map(|(id, n, p, b, d)| json!({"id": id, "tensors": n, "parameters": p, "bytes": b, "dtypes": d})).collect();
        let mut doc = json!({
            "architecture": model.architecture(),
            "parameters": model.parameters(),
            "weight_file_bytes": folder.weight_bytes(),
            "stages": stages,
        });
        if !by_dtype.is_empty() {
            doc["bytes_by_dtype"] = json!(by_dtype);
        }
        if args.tensors {
            doc["tensors"] = tensors.iter().map(TensorRow::json).collect();
        }
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
    if !by_dtype.is_empty() {
        let parts: Vec<String> = by_dtype
            .iter()
            .map(|(d, b)| format!("{d} {:.1} MiB", *b as f64 / (1 << 20) as f64))
            .collect();
        writeln!(out, "tensor bytes by dtype: {}", parts.join(", "))?;
    }
    if args.tensors {
        writeln!(
            out,
            "{:<56} {:>5} {:>20} {:>12}  quantisation",
            "tensor", "dtype", "shape", "bytes"
        )?;
        for t in &tensors {
            writeln!(
                out,
                "{:<56} {:>5} {:>20} {:>12}  {}",
                t.name,
                t.dtype,
                format!("{:?}", t.shape),
                t.bytes,
                t.quant.as_deref().unwrap_or("")
            )?;
        }
        return Ok(());
    }
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

struct TensorRow {
    name: String,
    dtype: &'static str,
    shape: Vec<usize>,
    bytes: u64,
    quant: Option<String>,
    entry: Option<edgerun_store::packed::QuantEntry>,
}

impl TensorRow {
    fn json(&self) -> serde_json::Value {
        json!({
            "name": self.name,
            "dtype": self.dtype,
            "shape": self.shape,
            "bytes": self.bytes,
            "quant": self.entry,
        })
    }
}

/// Every tensor of a packed store, unit by unit (none for a Hugging Face folder).
fn tensor_rows(source: &ModelSource) -> Vec<TensorRow> {
    let ModelSource::Packed(store) = source else {
        return Vec::new();
    };
    let manifest = store.manifest();
    manifest
        .units
        .iter()
        .flat_map(|u| &u.tensors)
        .map(|t| TensorRow {
            name: t.name.clone(),
            dtype: t.dtype.name(),
            shape: t.shape.clone(),
            bytes: t.length,
            quant: t.quant.as_ref().map(|q| {
                let [k, n] = q.matrix;
                format!(
                    "[{k}, {n}], {} inputs per {} scale, scales {} bytes, {:.2} bits per weight",
                    q.group,
                    q.scale_dtype,
                    q.scales_length,
                    t.length as f64 * 8.0 / (k * n) as f64
                )
            }),
            entry: t.quant.clone(),
        })
        .collect()
}
