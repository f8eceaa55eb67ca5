//! How a boundary activation travels: as f32, f16, int8 with a scale per channel, or split by
//! channel importance (DVFO's idea: the channels that matter most in int8, the rest in 4 bits
//! or only as their mean). The channel axis is the last one: transformer activations are
//! `[batch, seq, hidden]` and edgerun's feature maps are channels last (NHWC), so a channel's
//! values are a column of the `[positions, channels]` matrix the tensor is.
//!
//! Channel importance (`channels=R`) is a parameter-free spatial-channel attention over the
//! map `x[p, c]` (positions `p`, channels `c`):
//!
//! ```text
//! e[p] = sum_c x[p, c]^2                 energy of each position
//! a[p] = e[p] / sum_p e[p]               spatial attention: each position's share of it
//! s[c] = sum_p a[p] * x[p, c]^2          channel score: energy at the attended positions
//! ```
//!
//! The `ceil(R * channels)` channels of highest score go in int8 (a scale per channel,
//! `max |x| / 127`); the rest in int4 (`max |x| / 7`, two codes a byte) or, with `:mean`, as
//! their mean over positions only.

use std::str::FromStr;

use half::f16;

use crate::wire::{DataType, WireTensor};
use crate::{Result, ServeError};

/// How a boundary tensor is sent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Compression {
    /// f32 as computed: the tail's outputs equal a local run's bit for bit.
    None,
    F16,
    /// int8 with one scale per channel.
    Int8,
    /// The top `share` of channels by importance in int8, the rest as `rest` says.
    Channels {
        share: f32,
        rest: Rest,
    },
}

/// What the less important channels become.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rest {
    Int4,
    /// Only each channel's mean over positions is sent.
    Mean,
}

impl FromStr for Compression {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, String> {
        match text {
            "none" => return Ok(Self::None),
            "f16" => return Ok(Self::F16),
            "int8" => return Ok(Self::Int8),
            _ => {}
        }
        let usage = "expected none, f16, int8, channels=R or channels=R:mean with R in (0, 1]";
        let spec = text
            .strip_prefix("channels=")
            .ok_or_else(|| format!("{text:?}: {usage}"))?;
        let (share, rest) = match spec.split_once(':') {
            None => (spec, Rest::Int4),
            Some((share, "mean")) => (share, Rest::Mean),
            Some((share, "int4")) => (share, Rest::Int4),
            Some(_) => return Err(format!("{text:?}: {usage}")),
        };
        let share: f32 = share.parse().map_err(|_| format!("{text:?}: {usage}"))?;
        if !(share > 0.0 && share <= 1.0) {
            return Err(format!("{text:?}: {usage}"));
        }
        Ok(Self::Channels { share, rest })
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => write!(f, "none"),
            Self::F16 => write!(f, "f16"),
            Self::Int8 => write!(f, "int8"),
            Self::Channels {
                share,
                rest: Rest::Int4,
            } => write!(f, "channels={share}"),
            Self::Channels {
                share,
                rest: Rest::Mean,
            } => write!(f, "channels={share}:mean"),
        }
    }
}

/// Suffixes of the parts a compressed tensor travels as.
const SCALE: &str = ".scale";
const TOP: &str = ".top";
const TOP_CHANNELS: &str = ".top_channels";
const TOP_SCALE: &str = ".top_scale";
const REST: &str = ".rest";
const REST_SCALE: &str = ".rest_scale";
const REST_MEAN: &str = ".rest_mean";
const SHAPE: &str = ".shape";
const PARTS: [&str; 8] = [
    SCALE,
    TOP,
    TOP_CHANNELS,
    TOP_SCALE,
    REST,
    REST_SCALE,
    REST_MEAN,
    SHAPE,
];

/// The tensor a part belongs to (`hidden.scale` → `hidden`).
pub fn base_name(name: &str) -> &str {
    PARTS
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name)
}

/// `[positions, channels]` of a tensor whose last axis is the channels.
fn matrix(shape: &[usize]) -> (usize, usize) {
    let channels = shape.last().copied().unwrap_or(1).max(1);
    let elements: usize = shape.iter().product();
    (elements / channels, channels)
}

fn check_finite(name: &str, values: &[f32]) -> Result<()> {
    if values.iter().all(|v| v.is_finite()) {
        return Ok(());
    }
    Err(ServeError::bad(format!(
        "{name} holds values that are not finite; only --compress none carries those"
    )))
}

/// The parts that carry `values` (of `shape`) compressed as `how`.
pub fn encode(
    name: &str,
    shape: &[usize],
    values: &[f32],
    how: Compression,
) -> Result<Vec<WireTensor>> {
    match how {
        Compression::None => Ok(vec![WireTensor::from_f32(name, shape.to_vec(), values)?]),
        Compression::F16 => {
            if let Some(v) = values
                .iter()
                .find(|v| v.is_finite() && v.abs() > f32::from(f16::MAX))
            {
                return Err(ServeError::bad(format!("{name}: {v} does not fit in f16")));
            }
            Ok(vec![WireTensor::from_f16(name, shape.to_vec(), values)?])
        }
        Compression::Int8 => {
            check_finite(name, values)?;
            let (_, channels) = matrix(shape);
            let all: Vec<usize> = (0..channels).collect();
            let (codes, scales) = quantize_columns(values, channels, &all, 127.0);
            Ok(vec![
                WireTensor::from_i8(name, shape.to_vec(), &codes)?,
                WireTensor::from_f32(format!("{name}{SCALE}"), vec![channels], &scales)?,
            ])
        }
        Compression::Channels { share, rest } => {
            check_finite(name, values)?;
            encode_channels(name, shape, values, share, rest)
        }
    }
}

/// Symmetric codes of the columns `columns` of the `[_, channels]` matrix `values`, one scale
/// per column (`max |x| / levels`), row by row.
fn quantize_columns(
    values: &[f32],
    channels: usize,
    columns: &[usize],
    levels: f32,
) -> (Vec<i8>, Vec<f32>) {
    let mut scales = vec![0f32; columns.len()];
    for row in values.chunks_exact(channels) {
        for (s, &c) in scales.iter_mut().zip(columns) {
            *s = s.max(row[c].abs());
        }
    }
    scales.iter_mut().for_each(|s| *s /= levels);
    let mut codes = Vec::with_capacity(values.len() / channels * columns.len());
    for row in values.chunks_exact(channels) {
        for (&s, &c) in scales.iter().zip(columns) {
            let q = if s > 0.0 { (row[c] / s).round() } else { 0.0 };
            codes.push(q.clamp(-levels, levels) as i8);
        }
    }
    (codes, scales)
}

/// Channel scores: energy at positions weighted by their share of the map's energy.
pub fn channel_scores(values: &[f32], channels: usize) -> Vec<f64> {
    let energy: Vec<f64> = values
        .chunks_exact(channels)
        .map(|row| row.iter().map(|&v| f64::from(v) * f64::from(v)).sum())
        .collect();
    let total: f64 = energy.iter().sum();
    let mut scores = vec![0f64; channels];
    if total == 0.0 {
        return scores;
    }
    for (row, e) in values.chunks_exact(channels).zip(&energy) {
        let attention = e / total;
        for (s, &v) in scores.iter_mut().zip(row) {
            *s += attention * f64::from(v) * f64::from(v);
        }
    }
    scores
}

fn encode_channels(
    name: &str,
    shape: &[usize],
    values: &[f32],
    share: f32,
    rest: Rest,
) -> Result<Vec<WireTensor>> {
    let (positions, channels) = matrix(shape);
    let keep = ((share as f64 * channels as f64).ceil() as usize).clamp(1, channels);
    let scores = channel_scores(values, channels);
    let mut order: Vec<usize> = (0..channels).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut top = order[..keep].to_vec();
    let mut others = order[keep..].to_vec();
    top.sort_unstable();
    others.sort_unstable();
    let (top_codes, top_scales) = quantize_columns(values, channels, &top, 127.0);
    let top_index: Vec<i64> = top.iter().map(|&c| c as i64).collect();
    let mut parts = vec![
        WireTensor::from_i64(
            format!("{name}{SHAPE}"),
            vec![shape.len()],
            &shape.iter().map(|&d| d as i64).collect::<Vec<_>>(),
        )?,
        WireTensor::from_i8(format!("{name}{TOP}"), vec![positions, keep], &top_codes)?,
        channel_list(format!("{name}{TOP_CHANNELS}"), &top_index)?,
        WireTensor::from_f32(format!("{name}{TOP_SCALE}"), vec![keep], &top_scales)?,
    ];
    if others.is_empty() {
        return Ok(parts);
    }
    match rest {
        Rest::Int4 => {
            let (codes, scales) = quantize_columns(values, channels, &others, 7.0);
            let width = others.len().div_ceil(2);
            let mut packed = Vec::with_capacity(positions * width);
            for row in codes.chunks_exact(others.len()) {
                for pair in row.chunks(2) {
                    let low = (pair[0] + 8) as u8;
                    let high = pair.get(1).map_or(8, |&q| (q + 8) as u8);
                    packed.push(low | (high << 4));
                }
            }
            parts.push(WireTensor::from_u8(
                format!("{name}{REST}"),
                vec![positions, width],
                packed,
            )?);
            parts.push(WireTensor::from_f32(
                format!("{name}{REST_SCALE}"),
                vec![others.len()],
                &scales,
            )?);
        }
        Rest::Mean => {
            let mut means = vec![0f64; others.len()];
            for row in values.chunks_exact(channels) {
                for (m, &c) in means.iter_mut().zip(&others) {
                    *m += f64::from(row[c]);
                }
            }
            let means: Vec<f32> = means
                .iter()
                .map(|m| (m / positions.max(1) as f64) as f32)
                .collect();
            parts.push(WireTensor::from_f16(
                format!("{name}{REST_MEAN}"),
                vec![others.len()],
                &means,
            )?);
        }
    }
    Ok(parts)
}

/// Channel indices as UINT16 where they fit (the usual case), else INT64.
fn channel_list(name: String, index: &[i64]) -> Result<WireTensor> {
    if index.iter().all(|&c| c <= i64::from(u16::MAX)) {
        let bytes = index
            .iter()
            .flat_map(|&c| (c as u16).to_le_bytes())
            .collect();
        return WireTensor::new(name, DataType::U16, vec![index.len()], bytes);
    }
    WireTensor::from_i64(name, vec![index.len()], index)
}

/// Rebuilds tensor `name` from its parts among `tensors`: `(shape, values)`.
pub fn decode(name: &str, tensors: &[WireTensor]) -> Result<(Vec<usize>, Vec<f32>)> {
    let part = |suffix: &str| tensors.iter().find(|t| t.name == format!("{name}{suffix}"));
    let need = |suffix: &str| {
        part(suffix).ok_or_else(|| ServeError::bad(format!("{name}{suffix} is missing")))
    };
    if let Some(t) = part("") {
        return match t.datatype {
            DataType::I8 => {
                let scales = need(SCALE)?.to_f32()?;
                let (_, channels) = matrix(&t.shape);
                if scales.len() != channels || !scales.iter().all(|s| s.is_finite()) {
                    return Err(ServeError::bad(format!(
                        "{name}{SCALE}: {} finite scales expected, one per channel",
                        channels
                    )));
                }
                let codes = t.to_i8()?;
                let values = codes
                    .iter()
                    .enumerate()
                    .map(|(i, &q)| f32::from(q) * scales[i % channels])
                    .collect();
                Ok((t.shape.clone(), values))
            }
            DataType::F32 | DataType::F16 => Ok((t.shape.clone(), t.to_f32()?)),
            other => Err(ServeError::bad(format!(
                "{name} is {}; FP32, FP16 or INT8 with {name}{SCALE} expected",
                other.tag()
            ))),
        };
    }
    decode_channels(name, &need)
}

fn decode_channels<'t>(
    name: &str,
    need: &dyn Fn(&str) -> Result<&'t WireTensor>,
) -> Result<(Vec<usize>, Vec<f32>)> {
    let bad = |why: String| ServeError::bad(format!("{name}: {why}"));
    let shape: Vec<usize> = need(SHAPE)?
        .to_i64()?
        .into_iter()
        .map(usize::try_from)
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad("a negative dimension".into()))?;
    if shape.is_empty() {
        return Err(bad("an empty shape".into()));
    }
    let elements = crate::wire::elements(&shape)?;
    let (positions, channels) = matrix(&shape);
    let top = need(TOP)?;
    let top_channels = need(TOP_CHANNELS)?.to_i64()?;
    let keep = top_channels.len();
    if keep == 0 {
        return Err(bad("no channel is sent in int8".into()));
    }
    // What the other channels arrived as says how many there are: `channels` must equal the
    // count received before anything is allocated by it.
    let means = need(REST_MEAN).ok().map(|t| t.to_f32()).transpose()?;
    let rest_scales = match &means {
        Some(_) => None,
        None => need(REST)
            .ok()
            .map(|_| need(REST_SCALE)?.to_f32())
            .transpose()?,
    };
    let received = keep + means.as_ref().or(rest_scales.as_ref()).map_or(0, Vec::len);
    if received != channels {
        return Err(bad(format!(
            "{channels} channels in the shape, {received} received"
        )));
    }
    let top_channels: Vec<usize> = top_channels
        .into_iter()
        .map(|c| usize::try_from(c).ok().filter(|&c| c < channels))
        .collect::<Option<_>>()
        .ok_or_else(|| bad(format!("a channel index outside 0..{channels}")))?;
    let mut taken = vec![false; channels];
    for &c in &top_channels {
        if std::mem::replace(&mut taken[c], true) {
            return Err(bad(format!("channel {c} is listed twice")));
        }
    }
    let top_scales = need(TOP_SCALE)?.to_f32()?;
    if top.shape != [positions, keep]
        || top_scales.len() != keep
        || !top_scales.iter().all(|s| s.is_finite())
    {
        return Err(bad(format!(
            "the top channels do not make [{positions}, {keep}] with {keep} finite scales"
        )));
    }
    let others: Vec<usize> = (0..channels).filter(|&c| !taken[c]).collect();
    let mut values = vec![0f32; elements];
    let codes = top.to_i8()?;
    for (row, out) in codes
        .chunks_exact(keep.max(1))
        .zip(values.chunks_exact_mut(channels))
    {
        for ((&q, &c), &s) in row.iter().zip(&top_channels).zip(&top_scales) {
            out[c] = f32::from(q) * s;
        }
    }
    if others.is_empty() {
        return Ok((shape, values));
    }
    if let Some(means) = means {
        for out in values.chunks_exact_mut(channels) {
            for (&c, &m) in others.iter().zip(&means) {
                out[c] = m;
            }
        }
        return Ok((shape, values));
    }
    let rest = need(REST)?;
    rest.expect(DataType::U8)?;
    let scales = rest_scales.unwrap_or_default();
    let width = others.len().div_ceil(2);
    if rest.shape != [positions, width]
        || scales.len() != others.len()
        || !scales.iter().all(|s| s.is_finite())
    {
        return Err(bad(format!(
            "the other channels do not make [{positions}, {width}] with {} finite scales",
            others.len()
        )));
    }
    for (row, out) in rest
        .bytes
        .chunks_exact(width)
        .zip(values.chunks_exact_mut(channels))
    {
        for (j, (&c, &s)) in others.iter().zip(&scales).enumerate() {
            let byte = row[j / 2];
            let nibble = if j % 2 == 0 { byte & 0xf } else { byte >> 4 };
            out[c] = f32::from(nibble as i8 - 8) * s;
        }
    }
    Ok((shape, values))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(shape: &[usize], values: &[f32], how: Compression) -> Vec<f32> {
        let parts = encode("hidden", shape, values, how).unwrap();
        let (back_shape, back) = decode("hidden", &parts).unwrap();
        assert_eq!(back_shape, shape);
        back
    }

    fn sizes() -> impl Strategy<Value = (Vec<usize>, Vec<f32>)> {
        (1usize..6, 1usize..40).prop_flat_map(|(p, c)| {
            (
                Just(vec![1, p, c]),
                prop::collection::vec(-50f32..50.0, p * c),
            )
        })
    }

    proptest! {
        #[test]
        fn none_is_exact_and_int8_within_half_a_step((shape, values) in sizes()) {
            let exact = round_trip(&shape, &values, Compression::None);
            prop_assert!(exact.iter().zip(&values).all(|(a, b)| a.to_bits() == b.to_bits()));
            let c = *shape.last().unwrap();
            let back = round_trip(&shape, &values, Compression::Int8);
            for (i, (a, b)) in back.iter().zip(&values).enumerate() {
                let max = values.iter().skip(i % c).step_by(c).fold(0f32, |m, v| m.max(v.abs()));
                prop_assert!((a - b).abs() <= max / 127.0 * 0.5001 + 1e-6);
            }
        }

        #[test]
        fn channels_keep_the_top_in_int8_and_the_rest_in_int4(
            (shape, values) in sizes(), share in 0.05f32..1.0
        ) {
            let c = *shape.last().unwrap();
            let back = round_trip(&shape, &values, Compression::Channels { share, rest: Rest::Int4 });
            let keep = ((share as f64 * c as f64).ceil() as usize).clamp(1, c);
            let scores = channel_scores(&values, c);
            let mut order: Vec<usize> = (0..c).collect();
            order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
            for (rank, &ch) in order.iter().enumerate() {
                let levels = if rank < keep { 127.0 } else { 7.0 };
                let max = values.iter().skip(ch).step_by(c).fold(0f32, |m, v| m.max(v.abs()));
                for (a, b) in back.iter().zip(&values).skip(ch).step_by(c) {
                    prop_assert!((a - b).abs() <= max / levels * 0.5001 + 1e-6, "channel {ch} rank {rank}");
                }
            }
        }
    }

    #[test]
    fn the_loudest_channel_is_kept_and_dropped_ones_become_their_mean() {
        let values = [1.0, 100.0, 2.0, 3.0, -90.0, 4.0];
        let back = round_trip(
            &[2, 3],
            &values,
            Compression::Channels {
                share: 0.3,
                rest: Rest::Mean,
            },
        );
        assert!((back[1] - 100.0).abs() < 1.0 && (back[4] + 90.0).abs() < 1.0);
        assert_eq!([back[0], back[3]], [2.0, 2.0]);
        assert_eq!([back[2], back[5]], [3.0, 3.0]);
    }

    #[test]
    fn parses_and_refuses_specs() {
        assert_eq!("int8".parse::<Compression>(), Ok(Compression::Int8));
        assert_eq!(
            "channels=0.25:mean".parse::<Compression>(),
            Ok(Compression::Channels {
                share: 0.25,
                rest: Rest::Mean
            })
        );
        for bad in [
            "channels=0",
            "channels=1.5",
            "channels=x",
            "channels=0.5:zip",
            "int4",
            "",
        ] {
            assert!(bad.parse::<Compression>().is_err(), "{bad}");
        }
        assert!(encode("h", &[2], &[f32::NAN, 1.0], Compression::Int8).is_err());
        assert!(encode("h", &[1], &[1e6], Compression::F16).is_err());
    }

    #[test]
    fn hostile_parts_are_refused() {
        let parts = encode(
            "h",
            &[2, 4],
            &[1.0; 8],
            Compression::Channels {
                share: 0.5,
                rest: Rest::Int4,
            },
        )
        .unwrap();
        let mut twice = parts.clone();
        let channels = twice
            .iter_mut()
            .find(|t| t.name == "h.top_channels")
            .unwrap();
        channels.bytes = [0u16, 0].iter().flat_map(|c| c.to_le_bytes()).collect();
        assert!(decode("h", &twice).is_err(), "a channel twice");
        let mut outside = parts.clone();
        let channels = outside
            .iter_mut()
            .find(|t| t.name == "h.top_channels")
            .unwrap();
        channels.bytes = [0u16, 9].iter().flat_map(|c| c.to_le_bytes()).collect();
        assert!(decode("h", &outside).is_err(), "a channel outside the map");
        let mut huge = parts.clone();
        let shape = huge.iter_mut().find(|t| t.name == "h.shape").unwrap();
        *shape = WireTensor::from_i64("h.shape", vec![2], &[1 << 40, 1 << 40]).unwrap();
        assert!(decode("h", &huge).is_err(), "a shape the parts do not fill");
        let missing: Vec<_> = parts.into_iter().filter(|t| t.name != "h.rest").collect();
        assert!(decode("h", &missing).is_err());
    }
}
