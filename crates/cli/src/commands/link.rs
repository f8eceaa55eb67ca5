//! Link rates as people write them: `8Mbit`, `500kbit`, `0.5Mbit`, `100Mbps`, `2e6`
//! (bits per second), and the client-side link model `RATE[/DELAY]` (`8Mbit/20ms`).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use edgerun_serve::client::LinkModel;

/// Bits per second.
pub fn parse_rate(text: &str) -> Result<f64> {
    let t = text.trim();
    let split = t
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .with_context(|| format!("{text:?} is not a rate like 8Mbit or 500kbit"))?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "" | "bit" | "bps" => 1e0,
        "kbit" | "kbps" => 1e3,
        "mbit" | "mbps" => 1e6,
        "gbit" | "gbps" => 1e9,
        other => bail!("unknown rate unit {other:?} in {text:?} (use bit, kbit, Mbit, Gbit)"),
    };
    let rate = value * scale;
    if !(rate.is_finite() && rate > 0.0) {
        bail!("{text:?} is not a positive rate");
    }
    Ok(rate)
}

/// `RATE[/DELAY]`, the delay in ms (`20ms` or `20`) one way.
pub fn parse_link(text: &str) -> Result<LinkModel> {
    let (rate, delay) = text.split_once('/').unwrap_or((text, "0"));
    let ms: f64 = delay
        .trim()
        .trim_end_matches("ms")
        .parse()
        .with_context(|| format!("{delay:?} is not a delay in ms"))?;
    if !(ms.is_finite() && (0.0..=60_000.0).contains(&ms)) {
        bail!("{delay:?}: a delay is 0 to 60000 ms");
    }
    Ok(LinkModel {
        bits_per_s: parse_rate(rate)?,
        delay: Duration::from_secs_f64(ms / 1000.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_links() {
        assert_eq!(parse_rate("8Mbit").unwrap(), 8e6);
        assert_eq!(parse_rate("0.5Mbit").unwrap(), 5e5);
        assert_eq!(parse_rate("500kbit").unwrap(), 5e5);
        assert_eq!(parse_rate("2e6").unwrap(), 2e6);
        for bad in ["", "0Mbit", "-1Mbit", "8MB", "fast", "nanMbit"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        let link = parse_link("8Mbit/20ms").unwrap();
        assert_eq!(link.delay, Duration::from_millis(20));
        assert!(parse_link("8Mbit/-3").is_err());
    }
}
