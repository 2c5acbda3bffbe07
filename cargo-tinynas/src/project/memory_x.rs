//! The `MEMORY` block of a linker script (`memory.x`): the origin and length of FLASH and RAM.
//!
//! Accepted: `/* */` and `//` comments, `ORIGIN`/`org`/`o` and `LENGTH`/`len`/`l`, attributes
//! such as `(rx)`, numbers in decimal, hex or octal with `K`/`M` suffixes, and sums and differences
//! of them (`256K - 4K`). Anything else is an error that names the line.

use std::collections::BTreeMap;

/// One region of the `MEMORY` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub origin: u64,
    pub length: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MemoryXError {
    #[error("no MEMORY {{ ... }} block")]
    NoMemoryBlock,
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("no {0} region in the MEMORY block (regions found: {1})")]
    Missing(&'static str, String),
}

fn strip_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("/*") {
            let end = r.find("*/").map_or(r.len(), |e| e + 2);
            // Keep line numbers: replace the comment by its newlines.
            out.extend(r[..end].chars().filter(|&c| c == '\n'));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix("//") {
            let end = r.find('\n').unwrap_or(r.len());
            rest = &r[end..];
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// A sum of numbers with optional K/M suffixes.
fn expr(s: &str) -> Result<u64, String> {
    let mut total: i128 = 0;
    let mut sign = 1i128;
    let mut tokens = s.replace('+', " + ").replace('-', " - ");
    tokens = tokens.trim().to_string();
    let mut expect_number = true;
    for t in tokens.split_whitespace() {
        match (t, expect_number) {
            ("+", false) => (sign, expect_number) = (1, true),
            ("-", false) => (sign, expect_number) = (-1, true),
            (t, true) => {
                let (digits, mult) = match t.chars().last() {
                    Some('K') | Some('k') => (&t[..t.len() - 1], 1024),
                    Some('M') | Some('m') => (&t[..t.len() - 1], 1024 * 1024),
                    _ => (t, 1),
                };
                let v = if let Some(h) = digits
                    .strip_prefix("0x")
                    .or_else(|| digits.strip_prefix("0X"))
                {
                    u64::from_str_radix(h, 16)
                } else if digits.len() > 1 && digits.starts_with('0') {
                    u64::from_str_radix(&digits[1..], 8)
                } else {
                    digits.parse()
                }
                .map_err(|_| format!("{t:?} is not a number"))?;
                total += sign * i128::from(v) * mult;
                expect_number = false;
            }
            (t, _) => return Err(format!("unexpected {t:?}")),
        }
    }
    if expect_number {
        return Err(format!("incomplete expression {s:?}"));
    }
    u64::try_from(total).map_err(|_| format!("{s:?} is negative or too large"))
}

/// All regions of the `MEMORY` block, by name.
pub fn parse(text: &str) -> Result<BTreeMap<String, Region>, MemoryXError> {
    let clean = strip_comments(text);
    let start = clean.find("MEMORY").ok_or(MemoryXError::NoMemoryBlock)?;
    let open = clean[start..]
        .find('{')
        .map(|i| start + i + 1)
        .ok_or(MemoryXError::NoMemoryBlock)?;
    let close = clean[open..]
        .find('}')
        .map(|i| open + i)
        .ok_or(MemoryXError::NoMemoryBlock)?;
    let body = &clean[open..close];
    let line_of = |offset: usize| clean[..open + offset].matches('\n').count() + 1;
    // Each region starts at the name before a ':' (skipping an attribute list like `(rwx)`).
    let bytes = body.as_bytes();
    let mut starts = Vec::new();
    for (i, &b) in bytes.iter().enumerate() {
        if b != b':' {
            continue;
        }
        let mut j = i;
        while j > 0 && bytes[j - 1].is_ascii_whitespace() {
            j -= 1;
        }
        if j > 0 && bytes[j - 1] == b')' {
            while j > 0 && bytes[j - 1] != b'(' {
                j -= 1;
            }
            j = j.saturating_sub(1);
            while j > 0 && bytes[j - 1].is_ascii_whitespace() {
                j -= 1;
            }
        }
        while j > 0 && (bytes[j - 1].is_ascii_alphanumeric() || bytes[j - 1] == b'_') {
            j -= 1;
        }
        starts.push(j);
    }
    if let Some(&first) = starts.first() {
        if !body[..first].trim().is_empty() {
            return Err(MemoryXError::Syntax {
                line: line_of(0),
                message: format!("unexpected {:?}", body[..first].trim()),
            });
        }
    }
    let mut regions = BTreeMap::new();
    for (k, &from) in starts.iter().enumerate() {
        let to = starts.get(k + 1).copied().unwrap_or(body.len());
        let text = body[from..to].trim_end().trim_end_matches(',');
        let (name, spec) = region(text).map_err(|message| MemoryXError::Syntax {
            line: line_of(from),
            message,
        })?;
        regions.insert(name, spec);
    }
    Ok(regions)
}

fn region(s: &str) -> Result<(String, Region), String> {
    let (head, spec) = s.split_once(':').ok_or_else(|| {
        format!(
            "expected NAME : ORIGIN = ..., LENGTH = ... in {:?}",
            s.trim()
        )
    })?;
    let name = head.split('(').next().unwrap_or("").trim().to_string();
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(format!("bad region name {:?}", head.trim()));
    }
    let (mut origin, mut length) = (None, None);
    for part in spec.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| format!("expected KEY = VALUE in {part:?}"))?;
        let v = expr(value.trim())?;
        match key.trim().to_ascii_uppercase().as_str() {
            "ORIGIN" | "ORG" | "O" => origin = Some(v),
            "LENGTH" | "LEN" | "L" => length = Some(v),
            other => return Err(format!("unknown key {other:?} (expected ORIGIN or LENGTH)")),
        }
    }
    match (origin, length) {
        (Some(origin), Some(length)) => Ok((name, Region { origin, length })),
        _ => Err(format!("region {name} needs both ORIGIN and LENGTH")),
    }
}

/// FLASH and RAM of a `memory.x` (`FLASH` and `RAM`, case-insensitive).
pub fn flash_and_ram(text: &str) -> Result<(Region, Region), MemoryXError> {
    let regions = parse(text)?;
    let get = |want: &'static str| {
        regions
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(want))
            .map(|(_, r)| *r)
            .ok_or_else(|| {
                MemoryXError::Missing(want, regions.keys().cloned().collect::<Vec<_>>().join(", "))
            })
    };
    Ok((get("FLASH")?, get("RAM")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_usual_forms() {
        let text = "/* STM32F746 */\nMEMORY\n{\n  /* NOTE 1 K = 1 KiBi = 1024 bytes */\n  FLASH : ORIGIN = 0x08000000, LENGTH = 1024K\n  RAM (rwx) : ORIGIN = 0x20000000, LENGTH = 320K - 4K // keep 4K\n}\n_stack_start = ORIGIN(RAM) + LENGTH(RAM);\n";
        let (flash, ram) = flash_and_ram(text).unwrap();
        assert_eq!(
            flash,
            Region {
                origin: 0x0800_0000,
                length: 1 << 20
            }
        );
        assert_eq!(
            ram,
            Region {
                origin: 0x2000_0000,
                length: 316 * 1024
            }
        );
        let short = "MEMORY { flash : org = 0, len = 256k\n ram : o = 0x20000000, l = 65536 }";
        let (f, r) = flash_and_ram(short).unwrap();
        assert_eq!((f.length, r.length), (256 * 1024, 65536));
        let two_lines = "MEMORY {\n FLASH : ORIGIN = 0x0,\n   LENGTH = 1M\n RAM : ORIGIN = 0x20000000, LENGTH = 2M }";
        assert_eq!(flash_and_ram(two_lines).unwrap().1.length, 2 << 20);
    }

    #[test]
    fn errors_say_what_and_where() {
        assert_eq!(
            flash_and_ram("SECTIONS {}"),
            Err(MemoryXError::NoMemoryBlock)
        );
        let e = flash_and_ram("MEMORY {\n FLASH : ORIGIN = 0, LENGTH = 64K\n RAM : ORIGIN = 0x20000000, LENGTH = lots\n}")
            .unwrap_err();
        assert_eq!(
            e,
            MemoryXError::Syntax {
                line: 3,
                message: "\"lots\" is not a number".into()
            }
        );
        let e = flash_and_ram("MEMORY { FLASH : ORIGIN = 0, LENGTH = 64K }").unwrap_err();
        assert!(e.to_string().contains("no RAM region"), "{e}");
        assert!(expr("4K - 8K").unwrap_err().contains("negative"));
    }
}
