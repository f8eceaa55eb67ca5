//! Hostile input through the binary, one test per family of defect: outputs that would clobber
//! a device, a link's target or an input; concurrent packs; sizes from files or flags that
//! would exhaust memory or time; checkpoints, manifests, configs, profiles and scenarios that
//! would run silently wrong; empty inputs. Every refusal is one `error:` line and a non-zero
//! exit within seconds (`common::refused`). The models are tiny ones the test writes itself.

mod common;

use std::os::unix::fs::FileTypeExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;

use common::{ok, refused, Scratch};
use edgerun_models::IdTensor;
use edgerun_store::packed::{Manifest, MANIFEST_FILE};
use edgerun_store::{write_tensors, OutputTensor};

const BERT: &str = r#"{"model_type": "bert", "architectures": ["BertModel"], "vocab_size": 50,
  "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 16,
  "max_position_embeddings": 16, "type_vocab_size": 2, "hidden_act": "gelu"}"#;
const GPT2: &str = r#"{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": 60,
  "n_embd": 16, "n_layer": 2, "n_head": 2, "n_positions": 32, "eos_token_id": 59}"#;
const RESNET: &str = r#"{"model_type": "resnet", "architectures": ["ResNetModel"],
  "num_channels": 3, "embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1],
  "layer_type": "basic"}"#;

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// A tiny BERT folder `bert` with `ids.safetensors` beside it; returns (model, input).
fn bert(dir: &Scratch) -> (std::path::PathBuf, std::path::PathBuf) {
    let model = dir.path("bert");
    common::write_model(&model, BERT, &|n| n == "pooler.dense.weight");
    let input = dir.path("ids.safetensors");
    write_ids(&input, vec![1, 4], vec![1, 2, 3, 4]);
    (model, input)
}

fn write_ids(path: &Path, shape: Vec<usize>, ids: Vec<i64>) {
    let ids = IdTensor::new(shape, ids).unwrap();
    write_tensors(path, &[("input_ids".into(), OutputTensor::I64(ids))]).unwrap();
}

/// `run MODEL --input INPUT --output OUT` plus `extra`.
fn run_args<'a>(
    model: &'a Path,
    input: &'a Path,
    out: &'a Path,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let mut args = vec!["run", s(model), "--input", s(input), "--output", s(out)];
    args.extend_from_slice(extra);
    args
}

fn is_safetensors(path: &Path) -> bool {
    let bytes = std::fs::read(path).unwrap();
    bytes.len() > 8 && bytes[8] == b'{'
}

#[test]
fn outputs_write_devices_in_place_follow_links_and_ignore_planted_temporaries() {
    let dir = Scratch::new("hostile-out");
    let (model, input) = bert(&dir);

    // A device stays a device (as root, a rename would have replaced /dev/null).
    ok(&run_args(&model, &input, Path::new("/dev/null"), &[]));
    assert!(std::fs::metadata("/dev/null")
        .unwrap()
        .file_type()
        .is_char_device());

    // A symlink at OUT is followed: the link stays, its target gets the outputs.
    let (target, link) = (dir.path("target.safetensors"), dir.path("link.safetensors"));
    std::fs::write(&target, b"old").unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    ok(&run_args(&model, &input, &link, &[]));
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(is_safetensors(&target));

    // Links planted at the old predictable temporary names are never written through.
    let victim = dir.path("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let out = dir.path("out.safetensors");
    std::os::unix::fs::symlink(&victim, dir.path("out.safetensors.tmp")).unwrap();
    let store = dir.path("store");
    std::fs::create_dir_all(&store).unwrap();
    std::os::unix::fs::symlink(&victim, store.join("weights.bin.tmp")).unwrap();
    ok(&run_args(&model, &input, &out, &[]));
    ok(&["pack", s(&model), s(&store)]);
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(is_safetensors(&out));
}

#[test]
fn outputs_that_name_one_file_twice_or_an_input_are_refused_before_work() {
    let dir = Scratch::new("hostile-clash");
    let (model, input) = bert(&dir);
    let out = dir.path("out.safetensors");
    let weights = model.join("model.safetensors");
    let before = std::fs::read(&weights).unwrap();
    refused(
        &run_args(&model, &input, &out, &["--report", s(&out)]),
        "--report",
    );
    refused(&run_args(&model, &input, &input, &[]), "--input");
    refused(
        &run_args(&model, &input, &weights, &[]),
        "model.safetensors",
    );
    refused(
        &run_args(&model, &input, &model.join("config.json"), &[]),
        "config.json",
    );
    assert_eq!(std::fs::read(&weights).unwrap(), before);
    assert!(!out.exists());
    assert!(is_safetensors(&input));
}

#[test]
fn a_pack_into_a_store_another_pack_is_writing_is_refused() {
    let dir = Scratch::new("hostile-lock");
    let (model, _) = bert(&dir);
    let store = dir.path("store");
    std::fs::create_dir_all(&store).unwrap();
    let lock = std::fs::File::create(store.join(".edgerun-pack.lock")).unwrap();
    // SAFETY: flock on a descriptor this test owns.
    assert_eq!(
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    refused(&["pack", s(&model), s(&store)], "another edgerun pack");
    assert!(!store.join(MANIFEST_FILE).exists());
    drop(lock);
    ok(&["pack", s(&model), s(&store)]);
    ok(&["inspect", s(&store)]);
}

#[test]
fn layer_counts_past_what_the_checkpoint_holds_are_refused() {
    let dir = Scratch::new("hostile-layers");
    let cases = [
        (BERT, "\"num_hidden_layers\": 2", "num_hidden_layers"),
        (GPT2, "\"n_layer\": 2", "n_layer"),
        (RESNET, "\"depths\": [1, 1]", "depths"),
    ];
    for (i, (config, field, name)) in cases.into_iter().enumerate() {
        let model = dir.path(&format!("m{i}"));
        common::write_model(&model, config, &|_| false);
        for huge in [1u64 << 31, 1 << 40, 1 << 58, u64::MAX] {
            let value = if name == "depths" {
                format!("\"depths\": [1, {huge}]")
            } else {
                format!("\"{name}\": {huge}")
            };
            std::fs::write(model.join("config.json"), config.replace(field, &value)).unwrap();
            refused(&["inspect", s(&model)], name);
        }
    }
}

#[test]
fn devices_in_place_of_metadata_inputs_scenarios_and_profiles_are_refused() {
    let dir = Scratch::new("hostile-dev");
    let (model, input) = bert(&dir);
    let zero = Path::new("/dev/zero");
    let out = dir.path("out.safetensors");
    refused(&run_args(&model, zero, &out, &[]), "not a regular file");
    refused(&["mix", "/dev/zero"], "not a regular file");
    refused(&["bench-io", "/dev/zero"], "not a regular file");
    let empty = dir.path("empty");
    std::fs::write(&empty, b"").unwrap();
    refused(&["bench-io", s(&empty)], "empty");
    let store = dir.path("store");
    ok(&["pack", s(&model), s(&store)]);
    refused(
        &[
            "plan",
            s(&store),
            "--budget",
            "1MiB",
            "--profile",
            "/dev/zero",
        ],
        "not a regular file",
    );
    std::fs::remove_file(model.join("config.json")).unwrap();
    std::os::unix::fs::symlink(zero, model.join("config.json")).unwrap();
    refused(&run_args(&model, &input, &out, &[]), "not a regular file");
    std::fs::remove_file(store.join(MANIFEST_FILE)).unwrap();
    std::os::unix::fs::symlink(zero, store.join(MANIFEST_FILE)).unwrap();
    refused(&["inspect", s(&store)], "not a regular file");
}

#[test]
fn counts_and_sizes_past_their_bounds_are_refused_with_the_bound() {
    let dir = Scratch::new("hostile-bounds");
    let (model, input) = bert(&dir);
    refused(&["inspect", s(&model), "--threads", "100000"], "1..=256");
    refused(
        &["sim", "gemm", "--m", "4294967296", "--n", "4", "--k", "4"],
        "67108864",
    );
    refused(
        &[
            "sim",
            "gemm",
            "--m",
            "4",
            "--n",
            "4",
            "--k",
            "4",
            "--array",
            "100000x100000",
        ],
        "4096",
    );
    refused(
        &[
            "sim",
            "samm",
            "--model",
            s(&model),
            "--qg-array",
            "100000x100000",
        ],
        "4096",
    );
    let out = dir.path("out.safetensors");
    let budget = [
        "--strategy",
        "stream",
        "--budget",
        "99999999999999999999GiB",
    ];
    refused(&run_args(&model, &input, &out, &budget), "2^64");
    let store = dir.path("store");
    ok(&["pack", s(&model), s(&store)]);
    refused(
        &[
            "plan",
            s(&store),
            "--budget",
            "1MiB",
            "--max-loaders",
            "1000000",
        ],
        "64",
    );
    refused(
        &[
            "profile",
            s(&store),
            "--runs",
            "1000000000",
            "--output",
            s(&out),
        ],
        "1000",
    );
    let scenario = dir.path("mix.toml");
    let write_scenario = |extra: &str, inferences: &str| {
        std::fs::write(
            &scenario,
            format!(
                "budget = \"64MiB\"\ninferences = {inferences}\n[[model]]\nname = \"a\"\nstore = \"{}\"\ninput = \"{}\"\n{extra}",
                s(&store),
                s(&input)
            ),
        )
        .unwrap();
    };
    write_scenario("", "1000000000");
    refused(&["mix", s(&scenario)], "100000");
    write_scenario("", "1");
    refused(
        &["mix", s(&scenario), "--prefetch", "1000000000"],
        "1000000",
    );
}

#[test]
fn a_generation_past_the_positions_is_refused_without_wrapping() {
    let dir = Scratch::new("hostile-gen");
    let model = dir.path("gpt2");
    common::write_model(&model, GPT2, &|n| n.starts_with("transformer."));
    let input = dir.path("ids.safetensors");
    write_ids(&input, vec![1, 3], vec![1, 2, 3]);
    for n in ["30", "18446744073709551615"] {
        refused(
            &[
                "generate",
                s(&model),
                "--input",
                s(&input),
                "--max-new-tokens",
                n,
            ],
            "32",
        );
    }
    ok(&[
        "generate",
        s(&model),
        "--input",
        s(&input),
        "--max-new-tokens",
        "4",
    ]);
}

#[test]
fn sharded_checkpoints_take_each_tensor_from_where_the_weight_map_says() {
    let dir = Scratch::new("hostile-shards");
    let model = dir.path("sharded");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::write(model.join("config.json"), BERT).unwrap();
    let tensors = common::model_tensors(BERT, &|n| n == "pooler.dense.weight");
    let (first, second) = tensors.split_at(tensors.len() / 2);
    write_tensors(&model.join("a.safetensors"), first).unwrap();
    write_tensors(&model.join("b.safetensors"), second).unwrap();
    let index = |map: &dyn Fn(usize) -> &'static str| {
        let entries: Vec<String> = tensors
            .iter()
            .enumerate()
            .map(|(i, (name, _))| format!("\"{name}\": \"{}\"", map(i)))
            .collect();
        std::fs::write(
            model.join("model.safetensors.index.json"),
            format!("{{\"weight_map\": {{{}}}}}", entries.join(", ")),
        )
        .unwrap();
    };
    let half = first.len();
    let input = dir.path("ids.safetensors");
    write_ids(&input, vec![1, 4], vec![1, 2, 3, 4]);
    let out = dir.path("out.safetensors");
    index(&|i| {
        if i < half {
            "a.safetensors"
        } else {
            "b.safetensors"
        }
    });
    ok(&run_args(&model, &input, &out, &[]));

    // A map entry pointing at the wrong shard.
    index(&|i| {
        if i <= half {
            "a.safetensors"
        } else {
            "b.safetensors"
        }
    });
    refused(&run_args(&model, &input, &out, &[]), "does not hold it");

    // A tensor present in two shards: the map decides, and the other copy is refused.
    let mut doubled = second.to_vec();
    doubled.push(first[0].clone());
    write_tensors(&model.join("b.safetensors"), &doubled).unwrap();
    index(&|i| {
        if i < half {
            "a.safetensors"
        } else {
            "b.safetensors"
        }
    });
    refused(&run_args(&model, &input, &out, &[]), "weight map places");
}

/// Packs the tiny BERT and edits its manifest with `edit`, re-signing it when `resign`.
fn edited_store(
    dir: &Scratch,
    name: &str,
    resign: bool,
    edit: impl FnOnce(&mut Manifest),
) -> std::path::PathBuf {
    let (model, _) = bert(dir);
    let store = dir.path(name);
    ok(&["pack", s(&model), s(&store)]);
    let path = store.join(MANIFEST_FILE);
    let mut manifest: Manifest = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut manifest);
    if resign {
        manifest.checksum = manifest.compute_checksum();
    }
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    store
}

#[test]
fn manifests_are_checked_for_meaning_not_only_layout() {
    let dir = Scratch::new("hostile-manifest");
    let (_, input) = bert(&dir);
    let out = dir.path("out.safetensors");
    let flip = |m: &mut Manifest| {
        let t = m.units[1]
            .tensors
            .iter_mut()
            .find(|t| t.transposed)
            .unwrap();
        t.transposed = false;
    };

    // Edits that leave a consistent store of another model (a unit removed, so the output
    // would silently lack pooler_output; a flipped `transposed`) fail the manifest's checksum.
    let removed = edited_store(&dir, "removed", false, |m| {
        m.units.pop();
    });
    refused(&run_args(&removed, &input, &out, &[]), "checksum");
    let flipped = edited_store(&dir, "flipped", false, flip);
    refused(&["inspect", s(&flipped)], "checksum");

    // Re-signed edits that contradict the model are refused by validation.
    let flipped = edited_store(&dir, "flipped-signed", true, flip);
    refused(&run_args(&flipped, &input, &out, &[]), "transposed");
    let aliased = edited_store(&dir, "aliased", true, |m| {
        let offset = m.units[1].tensors[0].offset;
        m.units[1].tensors[1].offset = offset;
    });
    refused(&run_args(&aliased, &input, &out, &[]), "share bytes");
    let renamed = edited_store(&dir, "renamed", true, |m| {
        m.units[1].tensors[0].name.push_str(".renamed");
    });
    refused(&run_args(&renamed, &input, &out, &[]), ".renamed");
    let shared = edited_store(&dir, "shared", true, |m| {
        m.units[2].offset = m.units[1].offset;
    });
    refused(
        &run_args(&shared, &input, &out, &[]),
        "inside the unit before it",
    );
    assert!(!out.exists());
}

#[test]
fn config_flags_that_change_the_model_are_implemented_or_refused() {
    let dir = Scratch::new("hostile-flags");
    let (model, input) = bert(&dir);
    let out = dir.path("out.safetensors");
    for flag in ["\"is_decoder\": true", "\"add_cross_attention\": true"] {
        std::fs::write(
            model.join("config.json"),
            BERT.replacen('{', &format!("{{{flag}, "), 1),
        )
        .unwrap();
        refused(&run_args(&model, &input, &out, &[]), "not supported");
    }

    // GPT-2 untied: the head is the checkpoint's own lm_head.weight, which must exist.
    let gpt2 = dir.path("gpt2");
    let untied = GPT2.replacen('{', "{\"tie_word_embeddings\": false, ", 1);
    common::write_model(&gpt2, GPT2, &|n| n.starts_with("transformer."));
    std::fs::write(gpt2.join("config.json"), &untied).unwrap();
    refused(&["inspect", s(&gpt2)], "lm_head.weight");
    common::write_model(&gpt2, &untied, &|n| n.starts_with("transformer."));
    write_ids(&input, vec![1, 3], vec![1, 2, 3]);
    ok(&[
        "generate",
        s(&gpt2),
        "--input",
        s(&input),
        "--max-new-tokens",
        "2",
    ]);

    // A sentence-transformers Dense module is refused rather than skipped.
    let st = dir.path("st");
    common::write_model(&st, BERT, &|_| false);
    std::fs::write(
        st.join("modules.json"),
        r#"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]"#,
    )
    .unwrap();
    write_pooling_and_tokenizer(&st);
    refused(&["embed", s(&st), "--text", "a b"], "Dense");
}

/// A mean-pooling config and a word-level tokenizer that adds no special tokens.
fn write_pooling_and_tokenizer(dir: &Path) {
    std::fs::create_dir_all(dir.join("1_Pooling")).unwrap();
    std::fs::write(
        dir.join("1_Pooling/config.json"),
        r#"{"word_embedding_dimension": 8, "pooling_mode_mean_tokens": true}"#,
    )
    .unwrap();
    std::fs::write(
        dir.join("tokenizer.json"),
        r#"{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": null,
            "decoder": null,
            "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "a": 1, "b": 2}, "unk_token": "[UNK]"}}"#,
    )
    .unwrap();
}

#[test]
fn profiles_and_scenarios_are_validated_at_load() {
    let dir = Scratch::new("hostile-profile");
    let (model, input) = bert(&dir);
    let store = dir.path("store");
    ok(&["pack", s(&model), s(&store)]);
    let profile = dir.path("profile.json");
    ok(&[
        "profile",
        s(&store),
        "--input",
        s(&input),
        "--runs",
        "1",
        "--output",
        s(&profile),
    ]);
    let good: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&profile).unwrap()).unwrap();
    let bad_profile = dir.path("bad.json");
    let plan_with = |edit: &dyn Fn(&mut serde_json::Value), needle: &str| {
        let mut p = good.clone();
        edit(&mut p);
        std::fs::write(&bad_profile, serde_json::to_vec(&p).unwrap()).unwrap();
        refused(
            &[
                "plan",
                s(&store),
                "--budget",
                "64MiB",
                "--profile",
                s(&bad_profile),
            ],
            needle,
        );
    };
    let first_unit = |p: &mut serde_json::Value| -> serde_json::Value { p["units"][0].clone() };
    let unit_key = |p: &serde_json::Value, want: &str| -> String {
        p["units"][0]
            .as_object()
            .unwrap()
            .keys()
            .find(|k| k.contains(want))
            .unwrap_or_else(|| panic!("no {want} key in {}", p["units"][0]))
            .clone()
    };
    let compute = unit_key(&good, "compute");
    plan_with(&|p| p["units"][0][&compute] = (-1.0).into(), &compute);
    plan_with(&|p| p["units"][0][&compute] = 0.0.into(), &compute);
    plan_with(
        &|p| p["units"][0]["id"] = "someone_else".into(),
        "someone_else",
    );
    plan_with(
        &|p| {
            let unit = first_unit(p);
            p["units"].as_array_mut().unwrap().push(unit);
        },
        "units",
    );

    let scenario = dir.path("mix.toml");
    let mix_with = |model_table: &str, inferences: u64, needle: &str| {
        std::fs::write(
            &scenario,
            format!(
                "budget = \"64MiB\"\ninferences = {inferences}\n[[model]]\nname = \"a\"\nstore = \"{}\"\ninput = \"{}\"\n{model_table}",
                s(&store),
                s(&input)
            ),
        )
        .unwrap();
        refused(&["mix", s(&scenario)], needle);
    };
    for importance in ["-1", "nan", "inf", "0"] {
        mix_with(&format!("importance = {importance}\n"), 1, "importance");
    }
    mix_with("", 0, "inferences");
    let again = format!("[[model]]\nname = \"a\"\nstore = \"{}\"\n", s(&store));
    mix_with(&again, 1, "\"a\"");
}

#[test]
fn empty_sequences_and_images_are_refused() {
    let dir = Scratch::new("hostile-empty");
    let (model, input) = bert(&dir);
    let out = dir.path("out.safetensors");
    write_ids(&input, vec![1, 0], vec![]);
    refused(&run_args(&model, &input, &out, &[]), "input_ids");
    write_ids(&input, vec![0, 4], vec![]);
    refused(&run_args(&model, &input, &out, &[]), "input_ids");

    let st = dir.path("st");
    common::write_model(&st, BERT, &|_| false);
    write_pooling_and_tokenizer(&st);
    ok(&["embed", s(&st), "--text", "a b"]);
    refused(&["embed", s(&st), "--text", ""], "no tokens");

    let resnet = dir.path("resnet");
    common::write_model(&resnet, RESNET, &|_| false);
    let pixels = dir.path("pixels.safetensors");
    let empty = edgerun_tensor::Tensor::from_vec(&[1, 3, 0, 32], vec![]).unwrap();
    write_tensors(
        &pixels,
        &[("pixel_values".into(), OutputTensor::F32(empty))],
    )
    .unwrap();
    refused(&run_args(&resnet, &pixels, &out, &[]), "pixel_values");
}

/// A BERT wide enough that its matrices quantise (64 columns at least), packed to `dtype`.
fn quantised_store(dir: &Scratch, name: &str, dtype: &str) -> std::path::PathBuf {
    let model = dir.path("bert-64");
    if !model.exists() {
        let config = BERT
            .replace(r#""hidden_size": 8"#, r#""hidden_size": 64"#)
            .replace(r#""intermediate_size": 16"#, r#""intermediate_size": 128"#);
        common::write_model(&model, &config, &|n| n == "pooler.dense.weight");
    }
    let store = dir.path(name);
    ok(&["pack", s(&model), s(&store), "--dtype", dtype]);
    store
}

#[test]
fn quantised_stores_refuse_damage_and_bad_requests() {
    let dir = Scratch::new("hostile-quant");
    let (model, input) = bert(&dir);
    let out = dir.path("out.safetensors");
    refused(
        &["pack", s(&model), s(&dir.path("x")), "--dtype", "int3"],
        "unknown --dtype",
    );
    refused(
        &["pack", s(&model), s(&dir.path("y")), "--keep", "*"],
        "--keep applies to quantised packs",
    );
    for dtype in ["int8", "q4"] {
        let store = quantised_store(&dir, &format!("{dtype}-ok"), dtype);
        ok(&run_args(&store, &input, &out, &[]));

        // A scale made NaN. The unit's checksum catches it; read without the check (or with
        // the damage re-signed), binding refuses the scale itself.
        let damaged = quantised_store(&dir, &format!("{dtype}-scale"), dtype);
        let manifest: Manifest =
            serde_json::from_slice(&std::fs::read(damaged.join(MANIFEST_FILE)).unwrap()).unwrap();
        let unit = &manifest.units[1];
        let t = unit.tensors.iter().find(|t| t.quant.is_some()).unwrap();
        let q = t.quant.as_ref().unwrap();
        let at = unit.offset + t.offset + q.scales_offset;
        let poison: &[u8] = if dtype == "int8" {
            &[0, 0, 0xc0, 0x7f]
        } else {
            &[0, 0x7e]
        };
        let data = damaged.join("weights.bin");
        let mut bytes = std::fs::read(&data).unwrap();
        bytes[at as usize..at as usize + poison.len()].copy_from_slice(poison);
        std::fs::write(&data, &bytes).unwrap();
        refused(&run_args(&damaged, &input, &out, &[]), "checksum");
        refused(&run_args(&damaged, &input, &out, &["--no-verify"]), "scale");

        // A truncated data file.
        let truncated = quantised_store(&dir, &format!("{dtype}-short"), dtype);
        let data = truncated.join("weights.bin");
        let len = std::fs::metadata(&data).unwrap().len();
        std::fs::File::options()
            .write(true)
            .open(&data)
            .unwrap()
            .set_len(len - 4096)
            .unwrap();
        refused(&run_args(&truncated, &input, &out, &[]), "truncated");
    }
    // A quantisation entry that lies about its matrix, re-signed.
    let lying = quantised_store(&dir, "lying", "int8");
    let path = lying.join(MANIFEST_FILE);
    let mut manifest: Manifest = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let t = manifest.units[1]
        .tensors
        .iter_mut()
        .find(|t| t.quant.is_some())
        .unwrap();
    t.quant.as_mut().unwrap().matrix[0] += 4;
    manifest.checksum = manifest.compute_checksum();
    std::fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    refused(&run_args(&lying, &input, &out, &[]), "quantisation entry");
    assert!(!out.exists() || is_safetensors(&out));
}
