//! The bench firmware's report: one framed line on the semihosting console,
//!
//! ```text
//! TNAS-BENCH <payload as lowercase hex> <CRC-32 of the payload, 8 hex digits>\n
//! ```
//!
//! Payload (little-endian), format version [`VERSION`] (the firmware also carries it in the ELF
//! symbol `TINYNAS_BENCH_REPORT_VERSION`, which the host checks before running anything):
//!
//! ```text
//! u32 inputs | u32 classes | u32 steps (0: no per-layer timing) | u32 traced steps (0: no
//! trace) | u8 timer (0 SysTick ticks, 1 DWT cycles) | u32 stack peak bytes | u32 stack size bytes
//! inputs x (u64 elapsed | classes x i8 outputs)
//! steps x u64 (time from the start of the first inference to the end of each kernel call)
//! inputs x traced x u32 (CRC-32 of the tensor each kernel call wrote, for each input)
//! ```
//! A crash is reported as `TNAS-BENCH-FAULT <what>`.

/// The report format this host reads.
pub const VERSION: u32 = 2;

const FRAME: &str = "TNAS-BENCH ";
const FAULT: &str = "TNAS-BENCH-FAULT ";

/// What the firmware's timer counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timer {
    /// SysTick ticks at the core clock (under QEMU: convert to instructions with the machine's
    /// ns-per-tick, since `-icount shift=0` runs one instruction per ns).
    SysTick,
    /// DWT CYCCNT core clock cycles.
    Dwt,
}

/// A decoded report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub timer: Timer,
    pub stack_peak_bytes: u32,
    pub stack_size_bytes: u32,
    /// Per input: elapsed timer units and the output values.
    pub runs: Vec<(u64, Vec<i8>)>,
    /// Per kernel call, cumulative from the start of the first inference (empty unless asked).
    pub steps: Vec<u64>,
    /// Per input, per kernel call: the CRC-32 of the tensor it wrote (empty unless asked).
    pub traces: Vec<Vec<u32>>,
}

/// Why a console output is not a usable report.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReportError {
    #[error("the firmware reported a fault: {0}")]
    Fault(String),
    #[error("the firmware printed no report (its console output was: {0:?})")]
    Missing(String),
    #[error("the report is damaged: {0}")]
    Damaged(String),
}

/// Finds and decodes the report in a console transcript.
pub fn parse(console: &str) -> Result<Report, ReportError> {
    if let Some(i) = console.find(FAULT) {
        let rest = &console[i + FAULT.len()..];
        return Err(ReportError::Fault(
            rest.lines().next().unwrap_or("").trim().to_string(),
        ));
    }
    let Some(i) = console.find(FRAME) else {
        let tail: String = console
            .chars()
            .rev()
            .take(200)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(ReportError::Missing(tail));
    };
    let line = console[i + FRAME.len()..].lines().next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(hex), Some(crc), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ReportError::Damaged(
            "expected `<payload> <crc>` on the report line".into(),
        ));
    };
    let payload = unhex(hex).ok_or_else(|| ReportError::Damaged("payload is not hex".into()))?;
    let crc = u32::from_str_radix(crc.trim(), 16)
        .map_err(|_| ReportError::Damaged("checksum is not hex".into()))?;
    let found = crc32fast::hash(&payload);
    if found != crc {
        return Err(ReportError::Damaged(format!(
            "checksum {found:08x} does not match {crc:08x}"
        )));
    }
    decode(&payload)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn decode(p: &[u8]) -> Result<Report, ReportError> {
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], ReportError> {
        let s = p.get(at..at + n).ok_or_else(|| {
            ReportError::Damaged(format!("payload ends at byte {} of {}", p.len(), at + n))
        })?;
        at += n;
        Ok(s)
    };
    let u32_ = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let inputs = u32_(take(4)?) as usize;
    let classes = u32_(take(4)?) as usize;
    let steps = u32_(take(4)?) as usize;
    let traced = u32_(take(4)?) as usize;
    let timer = match take(1)?[0] {
        0 => Timer::SysTick,
        1 => Timer::Dwt,
        t => return Err(ReportError::Damaged(format!("unknown timer kind {t}"))),
    };
    let stack_peak_bytes = u32_(take(4)?);
    let stack_size_bytes = u32_(take(4)?);
    if inputs > 1 << 16 || classes > 1 << 20 || steps > 1 << 16 || traced > 1 << 16 {
        return Err(ReportError::Damaged("implausible sizes".into()));
    }
    let mut runs = Vec::with_capacity(inputs);
    for _ in 0..inputs {
        let t = u64::from_le_bytes(take(8)?.try_into().unwrap_or([0; 8]));
        let out = take(classes)?.iter().map(|&b| b as i8).collect();
        runs.push((t, out));
    }
    let mut st = Vec::with_capacity(steps);
    for _ in 0..steps {
        st.push(u64::from_le_bytes(take(8)?.try_into().unwrap_or([0; 8])));
    }
    let mut traces = Vec::new();
    if traced > 0 {
        for _ in 0..inputs {
            let mut t = Vec::with_capacity(traced);
            for _ in 0..traced {
                t.push(u32_(take(4)?));
            }
            traces.push(t);
        }
    }
    if at != p.len() {
        return Err(ReportError::Damaged(format!(
            "{} bytes after the report",
            p.len() - at
        )));
    }
    Ok(Report {
        timer,
        stack_peak_bytes,
        stack_size_bytes,
        runs,
        steps: st,
        traces,
    })
}

/// Encodes a report as the firmware does (for tests and the fake board).
pub fn encode(r: &Report) -> String {
    let mut p = Vec::new();
    p.extend_from_slice(&(r.runs.len() as u32).to_le_bytes());
    p.extend_from_slice(&(r.runs.first().map_or(0, |x| x.1.len()) as u32).to_le_bytes());
    p.extend_from_slice(&(r.steps.len() as u32).to_le_bytes());
    p.extend_from_slice(&(r.traces.first().map_or(0, Vec::len) as u32).to_le_bytes());
    p.push(match r.timer {
        Timer::SysTick => 0,
        Timer::Dwt => 1,
    });
    p.extend_from_slice(&r.stack_peak_bytes.to_le_bytes());
    p.extend_from_slice(&r.stack_size_bytes.to_le_bytes());
    for (t, out) in &r.runs {
        p.extend_from_slice(&t.to_le_bytes());
        p.extend(out.iter().map(|&v| v as u8));
    }
    for s in &r.steps {
        p.extend_from_slice(&s.to_le_bytes());
    }
    for c in r.traces.iter().flatten() {
        p.extend_from_slice(&c.to_le_bytes());
    }
    let hex: String = p.iter().map(|b| format!("{b:02x}")).collect();
    format!("{FRAME}{hex} {:08x}\n", crc32fast::hash(&p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            timer: Timer::SysTick,
            stack_peak_bytes: 512,
            stack_size_bytes: 8192,
            runs: vec![(1234, vec![1, -2, 3]), (1240, vec![-128, 127, 0])],
            steps: vec![10, 20, 1234],
            traces: vec![vec![7, 0xdead_beef, 9], vec![1, 2, 3]],
        }
    }

    #[test]
    fn round_trip_inside_other_console_output() {
        let text = format!("booting\n{}trailing", encode(&sample()));
        assert_eq!(parse(&text).unwrap(), sample());
    }

    #[test]
    fn damaged_reports_are_errors() {
        let good = encode(&sample());
        // Flip one hex digit of the payload.
        let mut bad = good.clone().into_bytes();
        let i = FRAME.len() + 3;
        bad[i] = if bad[i] == b'0' { b'1' } else { b'0' };
        assert!(matches!(
            parse(std::str::from_utf8(&bad).unwrap()),
            Err(ReportError::Damaged(_))
        ));
        // Cut in the middle.
        assert!(matches!(
            parse(&good[..good.len() / 2]),
            Err(ReportError::Damaged(_))
        ));
        assert!(matches!(parse("hello"), Err(ReportError::Missing(_))));
        assert_eq!(
            parse("x TNAS-BENCH-FAULT hard fault\n"),
            Err(ReportError::Fault("hard fault".into()))
        );
        // Every truncation of the payload is an error, never a panic.
        for n in 0..good.len() {
            let _ = parse(&good[..n]);
        }
    }
}
