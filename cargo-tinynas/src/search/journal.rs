//! The search journal: one JSON line per evaluated candidate, appended and synced to disk before
//! the search moves on. A search started again with the same settings (the same fingerprint)
//! reads it back and skips every candidate already evaluated; training is deterministic from the
//! seed, so a resumed search reaches the same result as one that was never interrupted. A line cut
//! short by a kill is ignored (and that candidate evaluated again).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Figures measured on the board.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub board: String,
    /// Worst latency over the bench inputs.
    pub latency: u64,
    /// "cycles" or "instructions".
    pub unit: String,
    pub peak_sram_bytes: u64,
    /// Flash of the firmware without the bench's own input images.
    pub flash_bytes: u64,
    pub outputs_match_host: bool,
}

/// How a candidate ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "status", content = "reason")]
pub enum Status {
    /// Within every budget, as measured.
    Fits,
    /// Over a budget, found from the model alone (not measured).
    OverBudgetAnalytic(String),
    /// Over a budget, as measured on the board.
    OverBudgetMeasured(String),
    /// Not a valid network for this input (too many cells).
    Invalid(String),
    /// `evolve`'s first rung: trained one epoch to rank it, predicted to fit, not measured.
    Screened,
}

/// What an entry records: a candidate of the search (trained its epochs, measured on the board),
/// a screened one (`evolve`: trained briefly to rank it, not measured), or the retrained winner
/// (written `"candidate"`, `"screen"` and `"final"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Candidate,
    Screen,
    Final,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Candidate => "candidate",
            EntryKind::Screen => "screen",
            EntryKind::Final => "final",
        }
    }
}

/// One evaluated candidate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub kind: EntryKind,
    pub arch: String,
    pub seed: u64,
    pub epochs: usize,
    pub float_val: Option<f32>,
    pub int8_val: Option<f32>,
    pub int8_test: Option<f32>,
    pub params: Option<usize>,
    pub macs: Option<u64>,
    pub arena_bytes: Option<usize>,
    pub measured: Option<Measured>,
    /// The latency the `evolve` predictor gave before the candidate was measured.
    #[serde(default)]
    pub predicted_latency: Option<u64>,
    /// `evolve`: the peak SRAM and flash predicted before it was measured (the arena and the
    /// parameters plus what the board's measured firmware took besides them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_sram_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predicted_flash_bytes: Option<u64>,
    /// `evolve`: the measured latency of each kernel call, as the predictor's table holds them
    /// (replayed on resume so that the table grows exactly as in the first run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<super::predict::Row>>,
    #[serde(flatten)]
    pub status: Status,
    pub seconds: f64,
    /// CRC-32 of the exported model file (the final entry: to find it again on resume).
    pub model_crc: Option<u32>,
}

/// The journal file of one search (one fingerprint).
#[derive(Debug)]
pub struct Journal {
    pub path: PathBuf,
    /// Entries read back, by `kind/arch/epochs` (`evolve` trains one architecture for several
    /// numbers of epochs).
    pub done: BTreeMap<String, Entry>,
    /// Lines that could not be read (a line cut short by a kill).
    pub skipped_lines: usize,
}

fn key(kind: EntryKind, arch: &str, epochs: usize) -> String {
    format!("{}/{arch}/{epochs}", kind.as_str())
}

impl Journal {
    /// Opens (or starts) the journal at `path`.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut done = BTreeMap::new();
        let mut skipped_lines = 0;
        if let Ok(text) = std::fs::read_to_string(path) {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                match serde_json::from_str::<Entry>(line) {
                    Ok(e) => {
                        done.insert(key(e.kind, &e.arch, e.epochs), e);
                    }
                    Err(_) => skipped_lines += 1,
                }
            }
        }
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        Ok(Journal {
            path: path.to_path_buf(),
            done,
            skipped_lines,
        })
    }

    pub fn get(&self, kind: EntryKind, arch: &str, epochs: usize) -> Option<&Entry> {
        self.done.get(&key(kind, arch, epochs))
    }

    /// Seconds spent on every entry so far (where a resumed search's `--time-budget` starts).
    pub fn seconds(&self) -> f64 {
        self.done.values().map(|e| e.seconds).sum()
    }

    /// Appends an entry and syncs it to disk.
    pub fn append(&mut self, e: &Entry) -> std::io::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)?;
        // A previous line cut short by a kill has no newline: start on a fresh line. (Writes in
        // append mode go to the end wherever the read left the cursor.)
        let len = f.metadata()?.len();
        let needs_newline = len > 0 && {
            let mut last = [0u8];
            f.seek(SeekFrom::Start(len - 1))?;
            f.read_exact(&mut last)?;
            last[0] != b'\n'
        };
        let mut line = serde_json::to_string(e).map_err(std::io::Error::other)?;
        line.push('\n');
        if needs_newline {
            line.insert(0, '\n');
        }
        f.write_all(line.as_bytes())?;
        f.sync_data()?;
        self.done.insert(key(e.kind, &e.arch, e.epochs), e.clone());
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A candidate entry for tests.
    pub(crate) fn entry(arch: &str, status: Status) -> Entry {
        Entry {
            kind: EntryKind::Candidate,
            arch: arch.into(),
            seed: 1,
            epochs: 3,
            float_val: Some(0.5),
            int8_val: Some(0.49),
            int8_test: None,
            params: Some(100),
            macs: Some(1000),
            arena_bytes: Some(64),
            measured: None,
            predicted_latency: None,
            predicted_sram_bytes: None,
            predicted_flash_bytes: None,
            layers: None,
            status,
            seconds: 1.5,
            model_crc: None,
        }
    }

    #[test]
    fn survives_a_line_cut_short() {
        let path =
            std::env::temp_dir().join(format!("tinynas-journal-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let mut j = Journal::open(&path).unwrap();
        j.append(&entry("nanonas:k=1,c=0", Status::Fits)).unwrap();
        j.append(&entry(
            "nanonas:k=1,c=1",
            Status::OverBudgetMeasured("SRAM 9000 > 8000".into()),
        ))
        .unwrap();
        // A kill in the middle of a write.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(b"{\"kind\":\"candidate\",\"arch\":\"nano")
            .unwrap();
        drop(f);
        let mut j = Journal::open(&path).unwrap();
        assert_eq!(j.done.len(), 2);
        assert_eq!(j.skipped_lines, 1);
        assert_eq!(
            j.get(EntryKind::Candidate, "nanonas:k=1,c=1", 3)
                .unwrap()
                .status,
            Status::OverBudgetMeasured("SRAM 9000 > 8000".into())
        );
        j.append(&entry("nanonas:k=2,c=0", Status::Fits)).unwrap();
        // The same architecture at other epochs (evolve's rungs) is an entry of its own.
        let mut longer = entry("nanonas:k=2,c=0", Status::Fits);
        longer.epochs = 9;
        j.append(&longer).unwrap();
        let j = Journal::open(&path).unwrap();
        assert_eq!(j.done.len(), 4, "the entry after the cut line reads back");
        assert_eq!(
            j.get(EntryKind::Candidate, "nanonas:k=2,c=0", 9)
                .unwrap()
                .epochs,
            9
        );
        assert_eq!(
            j.get(EntryKind::Candidate, "nanonas:k=2,c=0", 3)
                .unwrap()
                .epochs,
            3
        );
        assert!(j.get(EntryKind::Screen, "nanonas:k=2,c=0", 3).is_none());
        assert_eq!(j.seconds(), 6.0);
        let _ = std::fs::remove_file(&path);
    }

    /// Two lines of a journal written before entry kinds were typed (the example project's
    /// search, commit 0f218cd): they read back, and write back, unchanged.
    #[test]
    fn journals_written_before_typed_kinds_read_back() {
        let lines = [
            r#"{"kind":"candidate","arch":"nanonas:k=1,c=0","seed":1,"epochs":3,"float_val":0.3,"int8_val":0.3,"int8_test":null,"params":18,"macs":6728,"arena_bytes":895,"measured":{"board":"qemu-m4","latency":133480,"unit":"instructions","peak_sram_bytes":1216,"flash_bytes":8844,"outputs_match_host":true},"predicted_latency":null,"status":"fits","seconds":1.61459865,"model_crc":1329948919}"#,
            r#"{"kind":"final","arch":"nanonas:k=3,c=4","seed":1,"epochs":30,"float_val":0.975,"int8_val":0.975,"int8_test":0.96666664,"params":3263,"macs":73982,"arena_bytes":2940,"measured":{"board":"qemu-m4","latency":505760,"unit":"instructions","peak_sram_bytes":3996,"flash_bytes":22544,"outputs_match_host":true},"predicted_latency":null,"status":"fits","seconds":4.472622799,"model_crc":1785238431}"#,
        ];
        let path =
            std::env::temp_dir().join(format!("tinynas-journal-old-{}.jsonl", std::process::id()));
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let j = Journal::open(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!((j.done.len(), j.skipped_lines), (2, 0));
        let fin = j.get(EntryKind::Final, "nanonas:k=3,c=4", 30).unwrap();
        assert_eq!((fin.epochs, fin.model_crc), (30, Some(1785238431)));
        assert!(j.get(EntryKind::Candidate, "nanonas:k=1,c=0", 3).is_some());
        assert!(j.get(EntryKind::Final, "nanonas:k=1,c=0", 3).is_none());
        for line in lines {
            let e: Entry = serde_json::from_str(line).unwrap();
            assert_eq!(serde_json::to_string(&e).unwrap(), line);
        }
    }
}
