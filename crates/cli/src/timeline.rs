//! Draws a pipeline trace as an SVG: one lane per agent with a bar per span, coloured by kind,
//! and the governed-bytes curve beneath. Hand-written SVG: a few rectangles and one polyline do
//! not justify a plotting dependency.

use std::fmt::Write;

use edgerun_runtime::{SpanKind, Trace, Track};

const WIDTH: f64 = 1200.0;
const LEFT: f64 = 110.0;
const LANE: f64 = 26.0;
const CURVE: f64 = 140.0;

fn colour(kind: SpanKind) -> &'static str {
    match kind {
        SpanKind::WaitAdmission => "#f4c542",
        SpanKind::Load => "#4a90d9",
        SpanKind::WaitUnit => "#cccccc",
        SpanKind::Compute => "#3fa34d",
        SpanKind::Free => "#d9534f",
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The SVG document for `trace`; `unit_names` label the bars' tooltips.
pub fn render(trace: &Trace, unit_names: &[String], title: &str) -> String {
    let spans = trace.spans();
    let counter = trace.counter();
    let mut tracks: Vec<Track> = spans.iter().map(|s| s.track).collect();
    tracks.sort();
    tracks.dedup();
    let end = spans
        .iter()
        .map(|s| s.end_s)
        .chain(counter.iter().map(|c| c.0))
        .fold(1e-9, f64::max);
    let x = |t: f64| LEFT + t / end * (WIDTH - LEFT - 20.0);
    let lanes_bottom = 40.0 + LANE * tracks.len() as f64;
    let height = lanes_bottom + CURVE + 60.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="10" y="20" font-size="14">{}</text>"#,
        escape(title)
    );
    for (lane, track) in tracks.iter().enumerate() {
        let y = 30.0 + LANE * lane as f64;
        let _ = writeln!(
            svg,
            r#"<text x="10" y="{:.1}">{}</text>"#,
            y + 17.0,
            escape(&track.name())
        );
        for s in spans.iter().filter(|s| s.track == *track) {
            let w = (x(s.end_s) - x(s.start_s)).max(0.5);
            let unit = unit_names.get(s.unit).map_or(String::new(), |n| escape(n));
            let _ = writeln!(
                svg,
                r#"<rect x="{:.2}" y="{:.1}" width="{w:.2}" height="{:.1}" fill="{}"><title>{} {unit}: {:.1} ms</title></rect>"#,
                x(s.start_s),
                y + 4.0,
                LANE - 8.0,
                colour(s.kind),
                s.kind.name(),
                (s.end_s - s.start_s) * 1e3
            );
        }
    }
    let peak = counter.iter().map(|c| c.1).max().unwrap_or(0).max(1);
    let base = lanes_bottom + CURVE;
    let mut points = format!("{:.1},{base:.1}", x(0.0));
    let mut last = 0u64;
    for &(t, bytes) in &counter {
        let y_of = |b: u64| base - b as f64 / peak as f64 * (CURVE - 20.0);
        let _ = write!(
            points,
            " {:.1},{:.1} {:.1},{:.1}",
            x(t),
            y_of(last),
            x(t),
            y_of(bytes)
        );
        last = bytes;
    }
    let _ = writeln!(
        svg,
        r##"<polyline points="{points}" fill="none" stroke="#333" stroke-width="1.5"/>"##
    );
    let _ = writeln!(
        svg,
        r#"<text x="10" y="{:.1}">governed</text><text x="10" y="{:.1}">peak {:.1} MiB</text>"#,
        base - CURVE / 2.0,
        base - CURVE / 2.0 + 14.0,
        peak as f64 / (1 << 20) as f64
    );
    let _ = writeln!(
        svg,
        r#"<text x="{LEFT}" y="{:.1}">0 s</text><text x="{:.1}" y="{:.1}" text-anchor="end">{end:.3} s</text>"#,
        base + 18.0,
        WIDTH - 20.0,
        base + 18.0
    );
    for (i, kind) in [
        SpanKind::WaitAdmission,
        SpanKind::Load,
        SpanKind::WaitUnit,
        SpanKind::Compute,
        SpanKind::Free,
    ]
    .into_iter()
    .enumerate()
    {
        let lx = LEFT + 130.0 * i as f64;
        let _ = writeln!(
            svg,
            r#"<rect x="{lx}" y="{:.1}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            base + 30.0,
            colour(kind),
            lx + 16.0,
            base + 40.0,
            kind.name()
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn draws_every_span_and_escapes_the_title() {
        let trace = Trace::new();
        let t0 = Instant::now();
        trace.span(
            Track::Loader(0),
            SpanKind::Load,
            0,
            t0,
            t0 + Duration::from_millis(5),
        );
        trace.span(
            Track::Inference,
            SpanKind::Compute,
            0,
            t0 + Duration::from_millis(5),
            t0 + Duration::from_millis(9),
        );
        trace.bytes(1 << 20);
        let svg = render(&trace, &["embeddings".into()], "a < b & c");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<title>").count(), 2);
        assert!(svg.contains("a &lt; b &amp; c"));
        assert!(svg.contains("loader 0") && svg.contains("inference"));
    }
}
