//! Sizes as people write them (`300MiB`, `1.5GB`, `123456`), parsed exactly into bytes.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum SizeError {
    #[error("{0:?} is not a size like 300MiB or 1.5GB")]
    NotASize(String),
    #[error("unknown size unit {unit:?} in {text:?} (use B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)")]
    UnknownUnit { unit: String, text: String },
    #[error("{0:?} is more than 2^64 - 1 bytes")]
    TooLarge(String),
    #[error("{0:?} is not a positive size")]
    NotPositive(String),
}

/// Parses `300MiB`, `1.5GB`, `64k`, `123456` into bytes, exactly: digits are read as integers
/// (no floating point), a fraction of a byte is dropped (a budget is a cap), and a size
/// beyond 2^64 - 1 bytes is refused rather than saturated.
pub fn parse_size(text: &str) -> Result<u64, SizeError> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let not_a_size = || SizeError::NotASize(text.to_string());
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(not_a_size());
    }
    let scale: u128 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        "t" | "tb" => 1_000_000_000_000,
        "tib" => 1 << 40,
        other => {
            return Err(SizeError::UnknownUnit {
                unit: other.to_string(),
                text: text.to_string(),
            })
        }
    };
    let too_large = || SizeError::TooLarge(text.to_string());
    let digits = |s: &str| -> Result<u128, SizeError> {
        s.bytes().try_fold(0u128, |n, d| {
            n.checked_mul(10)
                .and_then(|n| n.checked_add(u128::from(d - b'0')))
                .ok_or_else(too_large)
        })
    };
    // A fraction finer than 10^-24 changes a count of bytes by less than 10^-11 at these
    // scales, and 24 digits times the largest scale (2^40) stay inside u128.
    let fraction = &fraction[..fraction.len().min(24)];
    let whole_bytes = digits(whole)?.checked_mul(scale).ok_or_else(too_large)?;
    let fraction_bytes = digits(fraction)?.checked_mul(scale).ok_or_else(too_large)?
        / 10u128.pow(fraction.len() as u32);
    let bytes = u64::try_from(whole_bytes + fraction_bytes).map_err(|_| too_large())?;
    if bytes == 0 {
        return Err(SizeError::NotPositive(text.to_string()));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("300MiB"), Ok(300 << 20));
        assert_eq!(parse_size("1.5GB"), Ok(1_500_000_000));
        assert_eq!(parse_size("123456"), Ok(123_456));
        // Found by fuzz/size: a long fraction times a binary unit overflowed u128.
        assert_eq!(
            parse_size(".88211184480321818444803218184460 3gib").ok(),
            None
        );
        assert_eq!(
            parse_size(".882111844803218184448032181844603gib"),
            Ok(947_160_381)
        );
        assert_eq!(parse_size("64 KiB"), Ok(65_536));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("-5MB").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size(".").is_err());
        assert!(parse_size("1.2.3MB").is_err());
        assert!(parse_size("0.5B").is_err());
    }

    #[test]
    fn sizes_are_exact_and_never_saturate() {
        assert_eq!(parse_size("9007199254740993"), Ok(9_007_199_254_740_993));
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
        assert!(parse_size("18446744073709551616").is_err());
        assert!(parse_size("99999999999999999999GiB").is_err());
        assert!(parse_size("999999999999999999999999999999999999999999").is_err());
        assert_eq!(parse_size("1.1MiB"), Ok(1_153_433));
        assert_eq!(parse_size("0.000000001GB"), Ok(1));
        assert_eq!(parse_size(".5KiB"), Ok(512));
    }
}
