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

/// Tick values for an axis from `lo` to `hi`: steps of 1, 2 or 5 times a power of ten, about
/// `n` of them.
fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    let span = (hi - lo).max(f64::MIN_POSITIVE);
    let raw = span / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&st| st >= raw)
        .unwrap_or(10.0 * mag);
    let mut v = Vec::new();
    let mut t = (lo / step).ceil() * step;
    while t <= hi + step * 1e-9 {
        v.push(t);
        t += step;
    }
    v
}

/// A count for an axis label: `950`, `12k`, `1.5M`.
fn short(v: f64) -> String {
    let (d, suffix) = if v.abs() >= 1e6 {
        (v / 1e6, "M")
    } else if v.abs() >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let text = format!("{d:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{suffix}")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The candidates as an SVG scatter plot a person reads at a glance: latency (in `unit`) across
/// and validation accuracy up, both with ticks; each circle's area by its peak SRAM; the Pareto
/// front over the three axes marked (not joined: a three-axis front is no line on two axes),
/// `winner` ringed and named; a legend; labels only for the front and the winner, kept from
/// overlapping and inside the plot.
pub fn svg(entries: &[Entry], front: &[Entry], winner: Option<&str>, unit: &str) -> String {
    use std::fmt::Write;
    let pts: Vec<(&Entry, f64, f64, f64)> = entries
        .iter()
        .filter(|e| e.kind == super::journal::EntryKind::Candidate)
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
    let (w, h) = (820.0, 500.0);
    let (left, right, top, bottom) = (72.0, 240.0, 44.0, 62.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let lmax = pts.iter().map(|p| p.1).fold(1.0, f64::max) * 1.05;
    let (amin, amax) = pts
        .iter()
        .fold((1.0f64, 0.0f64), |(lo, hi), p| (lo.min(p.2), hi.max(p.2)));
    let (amin, amax) = if amax > amin {
        (
            (amin - 0.05 * (amax - amin)).max(0.0),
            (amax + 0.05 * (amax - amin)).min(1.0),
        )
    } else {
        ((amin - 0.05).max(0.0), (amax + 0.05).min(1.0))
    };
    let smax = pts.iter().map(|p| p.3).fold(1.0, f64::max);
    let x = |l: f64| left + pw * l / lmax;
    let y = |a: f64| top + ph - ph * (a - amin) / (amax - amin).max(1e-9);
    let radius = |sram: f64| 3.0 + 9.0 * (sram / smax).sqrt();
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="24" font-size="15" font-weight="bold">Search candidates: validation accuracy against latency ({} measured)</text>"#,
        pts.len()
    );
    // Grid, ticks and tick labels.
    for t in ticks(0.0, lmax, 6) {
        let _ = writeln!(
            s,
            r##"<line x1="{0:.1}" y1="{top}" x2="{0:.1}" y2="{1:.1}" stroke="#e4e4e4"/><text x="{0:.1}" y="{2:.1}" text-anchor="middle">{3}</text>"##,
            x(t),
            top + ph,
            top + ph + 16.0,
            short(t)
        );
    }
    for t in ticks(100.0 * amin, 100.0 * amax, 6) {
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{0:.1}" x2="{1:.1}" y2="{0:.1}" stroke="#e4e4e4"/><text x="{2:.1}" y="{3:.1}" text-anchor="end">{4} %</text>"##,
            y(t / 100.0),
            left + pw,
            left - 6.0,
            y(t / 100.0) + 4.0,
            short(t)
        );
    }
    let _ = writeln!(
        s,
        r#"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">latency per inference ({unit})</text>"#,
        left + pw / 2.0,
        h - 18.0
    );
    let _ = writeln!(
        s,
        r#"<text x="18" y="{0:.1}" transform="rotate(-90 18 {0:.1})" text-anchor="middle">validation accuracy after the proxy training</text>"#,
        top + ph / 2.0
    );
    // Points: the others first, the front on top.
    let on_front = |e: &Entry| front.iter().any(|f| f.arch == e.arch);
    let mut order: Vec<&(&Entry, f64, f64, f64)> = pts.iter().collect();
    order.sort_by_key(|p| on_front(p.0));
    for (e, l, a, sram) in order.iter().map(|p| **p) {
        let fill = match (&e.status, on_front(e)) {
            (Status::Fits, true) => "tomato",
            (Status::Fits, false) => "steelblue",
            _ => "lightgray",
        };
        let _ = writeln!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="{:.1}" fill="{fill}" fill-opacity="0.75" stroke="white"><title>{}: {:.1} %, latency {l} {unit}, peak SRAM {sram} bytes</title></circle>"#,
            x(l),
            y(a),
            radius(sram),
            escape(&e.arch),
            100.0 * a
        );
    }
    let win = winner.and_then(|w| pts.iter().find(|p| p.0.arch == w));
    if let Some((_, l, a, sram)) = win {
        let _ = writeln!(
            s,
            r#"<circle cx="{:.1}" cy="{:.1}" r="{:.1}" fill="none" stroke="black" stroke-width="2.5"/>"#,
            x(*l),
            y(*a),
            radius(*sram) + 4.0
        );
    }
    // Labels for the winner and the front, each placed right of its point (left near the right
    // edge), dropped where it would overlap one already placed.
    let mut placed: Vec<(f64, f64, f64, f64)> = Vec::new();
    let mut labelled: Vec<&(&Entry, f64, f64, f64)> = pts
        .iter()
        .filter(|p| on_front(p.0) || Some(p.0.arch.as_str()) == winner)
        .collect();
    labelled.sort_by_key(|p| Some(p.0.arch.as_str()) != winner);
    for (e, l, a, sram) in labelled.iter().map(|p| **p) {
        let name = e.arch.trim_start_matches("nanonas:");
        let text = if Some(e.arch.as_str()) == winner {
            format!("winner {name}")
        } else {
            name.to_string()
        };
        let tw = 6.6 * text.chars().count() as f64;
        // Clear of the point, and of the winner's ring.
        let r = radius(sram) + if text.starts_with("winner") { 9.0 } else { 3.0 };
        // Right of the point, or ending left of it where the plot's edge is near.
        let (tx, anchor, x0) = if x(l) + r + tw > left + pw - 2.0 {
            (x(l) - r, "end", x(l) - r - tw)
        } else {
            (x(l) + r, "start", x(l) + r)
        };
        let ty = y(a) + 4.0;
        let bbox = (x0, ty - 11.0, x0 + tw, ty + 2.0);
        if placed
            .iter()
            .any(|b| bbox.0 < b.2 && b.0 < bbox.2 && bbox.1 < b.3 && b.1 < bbox.3)
        {
            continue;
        }
        placed.push(bbox);
        let weight = if text.starts_with("winner") {
            "bold"
        } else {
            "normal"
        };
        let _ = writeln!(
            s,
            r#"<text x="{tx:.1}" y="{ty:.1}" text-anchor="{anchor}" font-weight="{weight}">{}</text>"#,
            escape(&text)
        );
    }
    // The legend.
    let lx = w - right + 16.0;
    let mut ly = top + 10.0;
    let _ = writeln!(
        s,
        r#"<text x="{lx}" y="{ly}" font-weight="bold">Legend</text>"#
    );
    for (fill, stroke, what) in [
        ("tomato", "white", "Pareto front: no fitting"),
        ("", "", "candidate is better on accuracy,"),
        ("", "", "latency and peak SRAM at once"),
        ("steelblue", "white", "fits the budgets"),
        ("lightgray", "white", "over a budget"),
        ("none", "black", "the winner (retrained)"),
    ] {
        ly += 20.0;
        if !fill.is_empty() {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="6" fill="{fill}" stroke="{stroke}" stroke-width="{}"/>"#,
                lx + 6.0,
                ly - 4.0,
                if fill == "none" { 2.5 } else { 1.0 }
            );
        } else {
            ly -= 4.0;
        }
        let _ = writeln!(s, r#"<text x="{:.1}" y="{ly:.1}">{what}</text>"#, lx + 18.0);
    }
    ly += 34.0;
    let _ = writeln!(
        s,
        r#"<text x="{lx}" y="{ly:.1}">circle area: peak SRAM</text>"#
    );
    for frac in [1.0, 0.25] {
        ly += 28.0;
        let r = radius(smax * frac);
        let _ = writeln!(
            s,
            r##"<circle cx="{:.1}" cy="{:.1}" r="{r:.1}" fill="#999" fill-opacity="0.5"/><text x="{:.1}" y="{:.1}">{} bytes</text>"##,
            lx + 12.0,
            ly - 4.0,
            lx + 30.0,
            ly,
            (smax * frac).round()
        );
    }
    s.push_str("</svg>\n");
    s
}
