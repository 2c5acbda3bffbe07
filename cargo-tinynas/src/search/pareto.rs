//! The report of a search: its Pareto front and the SVG scatter plot of every candidate.

use super::journal::{Entry, Status};

/// Candidates that fit and that no other fitting candidate beats on accuracy, latency and peak
/// SRAM at once.
pub fn pareto(entries: &[Entry]) -> Vec<Entry> {
    let fits: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.status == Status::Fits && e.measured.is_some())
        .collect();
    let key = |e: &Entry| {
        let m = e
            .measured
            .as_ref()
            .map_or((u64::MAX, u64::MAX), |m| (m.latency, m.peak_sram_bytes));
        (e.float_val.unwrap_or(0.0), m.0, m.1)
    };
    let mut front: Vec<Entry> = fits
        .iter()
        .filter(|e| {
            let (a, l, r) = key(e);
            !fits.iter().any(|o| {
                let (a2, l2, r2) = key(o);
                a2 >= a && l2 <= l && r2 <= r && (a2 > a || l2 < l || r2 < r)
            })
        })
        .map(|e| (*e).clone())
        .collect();
    front.sort_by_key(|e| e.measured.as_ref().map_or(0, |m| m.latency));
    front
}

/// The candidates as an SVG scatter plot: latency across, accuracy up, the Pareto front joined and
/// marked, each point's area by its peak SRAM.
pub fn svg(entries: &[Entry], front: &[Entry]) -> String {
    use std::fmt::Write;
    let pts: Vec<(&Entry, f64, f64, f64)> = entries
        .iter()
        .filter_map(|e| {
            let m = e.measured.as_ref()?;
            Some((
                e,
                m.latency as f64,
                f64::from(e.float_val.unwrap_or(0.0)),
                m.peak_sram_bytes as f64,
            ))
        })
        .collect();
    let (w, h, pad) = (640.0, 420.0, 60.0);
    let lmax = pts.iter().map(|p| p.1).fold(1.0, f64::max);
    let (amin, amax) = pts
        .iter()
        .fold((1.0f64, 0.0f64), |(lo, hi), p| (lo.min(p.2), hi.max(p.2)));
    let (amin, amax) = if amax > amin {
        (amin, amax)
    } else {
        (0.0, 1.0)
    };
    let smax = pts.iter().map(|p| p.3).fold(1.0, f64::max);
    let x = |l: f64| pad + (w - 2.0 * pad) * l / lmax;
    let y = |a: f64| h - pad - (h - 2.0 * pad) * (a - amin) / (amax - amin);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<line x1="{pad}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#,
        h - pad,
        w - pad,
        h - pad
    );
    let _ = writeln!(
        s,
        r#"<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{}" stroke="black"/>"#,
        h - pad
    );
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">latency per inference (0 to {lmax})</text>"#,
        w / 2.0,
        h - 20.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">validation accuracy ({:.1} % to {:.1} %)</text>"#,
        h / 2.0,
        h / 2.0,
        100.0 * amin,
        100.0 * amax
    );
    let mut line = String::new();
    for e in front {
        if let Some(p) = pts.iter().find(|p| p.0.arch == e.arch) {
            let _ = write!(line, "{:.1},{:.1} ", x(p.1), y(p.2));
        }
    }
    let _ = writeln!(
        s,
        r#"<polyline points="{}" fill="none" stroke="tomato" stroke-width="1.5"/>"#,
        line.trim()
    );
    for (e, l, a, sram) in &pts {
        let on_front = front.iter().any(|f| f.arch == e.arch);
        let r = 3.0 + 9.0 * (sram / smax).sqrt();
        let fill = if e.status == Status::Fits {
            if on_front {
                "tomato"
            } else {
                "steelblue"
            }
        } else {
            "lightgray"
        };
        let _ = writeln!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="{r:.1}" fill="{fill}" fill-opacity="0.7"><title>{}: {:.1} %, latency {l}, peak SRAM {sram} bytes</title></circle>"#,
            x(*l),
            y(*a),
            e.arch,
            100.0 * a
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            x(*l) + r + 2.0,
            y(*a) + 4.0,
            e.arch.trim_start_matches("nanonas:")
        );
    }
    s.push_str("</svg>\n");
    s
}
