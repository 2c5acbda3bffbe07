//! The real board: a chip behind a debug probe, through the probe-rs library. Flashes the bench
//! firmware (verified), resets and runs it, serves its semihosting console, and reads the report.
//! Latency is in core clock **cycles** (DWT CYCCNT; SysTick at the core clock on Cortex-M0/M0+).
//!
//! Chip facts (core, flash, RAM) come from probe-rs's target database ([`chip_facts`]).

use std::time::{Duration, Instant};

use probe_rs::config::{Registry, Target};
pub(crate) use probe_rs::probe::list::Lister;
use probe_rs::probe::{DebugProbeInfo, DebugProbeSelector, Probe};
use probe_rs::semihosting::SemihostingCommand;
use probe_rs::{BreakpointCause, CoreStatus, HaltReason, Permissions};

use super::{
    check_shape, check_version, Board, BoardError, LatencyUnit, Measurement, MemoryLayout,
};
use crate::firmware::Firmware;
use crate::report::{self, Timer};

/// Errors a user meets with a real board, each with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("no debug probe found; connect one (and check its USB permissions), or use --board qemu-m4 to measure on the emulator")]
    NoProbe,
    #[error("several debug probes are connected; choose one with --probe VID:PID[:SERIAL]:\n{0}")]
    SeveralProbes(String),
    #[error("no connected probe matches --probe {selector}; connected:\n{list}")]
    ProbeNotFound { selector: String, list: String },
    #[error(
        "--probe {0:?} is not VID:PID[:SERIAL] (hex ids, e.g. 0483:374b or 0483:374b:0671FF3833)"
    )]
    BadSelector(String),
    #[error("unknown chip {name:?}{suggestions}")]
    UnknownChip { name: String, suggestions: String },
    #[error("chip {chip}: {what} is not supported by the bench firmware (Cortex-M0/M0+/M3/M4/M7/M33/M55 are)")]
    UnsupportedCore { chip: String, what: String },
    #[error("chip {0}: probe-rs lists no flash or no RAM region for it; pass the memory with a memory.x")]
    NoMemory(String),
    #[error("cannot open the probe {probe}: {source}")]
    Open {
        probe: String,
        source: probe_rs::probe::DebugProbeError,
    },
    #[error("cannot attach to {chip}: {source}; check the wiring and power, or try --connect-under-reset")]
    Attach {
        chip: String,
        source: probe_rs::Error,
    },
    #[error("flashing {chip} failed: {source}")]
    Flash {
        chip: String,
        source: probe_rs::flashing::FileDownloadError,
    },
    #[error(
        "the target did not finish within {0} s (the firmware hung, or the probe lost the target)"
    )]
    Timeout(u64),
    #[error("the target stopped unexpectedly ({0}); console so far: {1:?}")]
    Halted(String, String),
    #[error("the firmware exited with an error ({0}); console: {1:?}")]
    ExitError(String, String),
    #[error("probe-rs: {0}")]
    Other(#[from] probe_rs::Error),
}

/// What the bench needs to know of a chip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipFacts {
    /// The chip's name in the database (may be longer than what the user typed).
    pub name: String,
    pub core: String,
    pub target: &'static str,
    pub timer: Timer,
    pub unlock_dwt: bool,
    pub memory: MemoryLayout,
}

/// Looks a chip up in probe-rs's target database: Rust target, timer, flash and RAM.
///
/// RAM: contiguous RAM regions merged, preferring the data bus (0x2000_0000 up; nRF52840 lists its
/// RAM twice, and marks the data-bus copy as the alias), then the largest; flash: the first
/// non-alias non-volatile region.
pub fn chip_facts(name: &str) -> Result<ChipFacts, ProbeError> {
    let registry = Registry::from_builtin_families();
    let target = registry
        .get_target_by_name(name)
        .map_err(|_| ProbeError::UnknownChip {
            name: name.to_string(),
            suggestions: suggest(&registry, name),
        })?;
    facts_of(&target)
}

fn facts_of(t: &Target) -> Result<ChipFacts, ProbeError> {
    use probe_rs::CoreType;
    let core_type =
        t.cores
            .first()
            .map(|c| c.core_type)
            .ok_or_else(|| ProbeError::UnsupportedCore {
                chip: t.name.clone(),
                what: "no core".into(),
            })?;
    let (core, target, timer, unlock_dwt) = match core_type {
        CoreType::Armv6m => ("Cortex-M0/M0+", "thumbv6m-none-eabi", Timer::SysTick, false),
        CoreType::Armv7m => ("Cortex-M3", "thumbv7m-none-eabi", Timer::Dwt, false),
        // Unlocking the DWT is needed on Cortex-M7 and harmless on M4 (the lock register reads as
        // zero and ignores writes there).
        CoreType::Armv7em if is_cortex_m7(&t.name) => {
            ("Cortex-M7", "thumbv7em-none-eabihf", Timer::Dwt, true)
        }
        CoreType::Armv7em => ("Cortex-M4", "thumbv7em-none-eabihf", Timer::Dwt, true),
        CoreType::Armv8m => (
            "Cortex-M33/M55",
            "thumbv8m.main-none-eabihf",
            Timer::Dwt,
            false,
        ),
        other => {
            return Err(ProbeError::UnsupportedCore {
                chip: t.name.clone(),
                what: format!("{other:?}"),
            })
        }
    };
    let mut ram: Vec<std::ops::Range<u64>> = t
        .memory_map
        .iter()
        .filter_map(|r| r.as_ram_region())
        .map(|r| r.range.clone())
        .collect();
    ram.sort_by_key(|r| r.start);
    ram.dedup();
    // Merge contiguous regions (STM32F7: DTCM, SRAM1 and SRAM2 follow each other).
    let mut merged: Vec<std::ops::Range<u64>> = Vec::new();
    for r in ram {
        match merged.last_mut() {
            Some(last) if last.end == r.start => last.end = r.end,
            _ => merged.push(r),
        }
    }
    // Prefer RAM on the data bus (0x2000_0000..0x4000_0000): nRF52840 lists the same 256 KiB at
    // 0x0080_0000 (code bus) and 0x2000_0000. Then the largest.
    merged.sort_by_key(|r| {
        (
            !(0x2000_0000..0x4000_0000).contains(&r.start),
            std::cmp::Reverse(r.end - r.start),
        )
    });
    // The first non-alias flash region, with those that follow it without a gap (dual-bank
    // parts such as the STM32G0B1 list each bank on its own).
    let mut nvm: Vec<std::ops::Range<u64>> = t
        .memory_map
        .iter()
        .filter_map(|r| r.as_nvm_region())
        .filter(|r| !r.is_alias)
        .map(|r| r.range.clone())
        .collect();
    let flash = nvm.first().cloned().map(|first| {
        nvm.sort_by_key(|r| r.start);
        nvm.iter().fold(first, |acc, r| {
            if r.start == acc.end {
                acc.start..r.end
            } else {
                acc
            }
        })
    });
    let (Some(ram), Some(flash)) = (merged.first(), flash) else {
        return Err(ProbeError::NoMemory(t.name.clone()));
    };
    Ok(ChipFacts {
        name: t.name.clone(),
        core: core.into(),
        target,
        timer,
        unlock_dwt,
        memory: MemoryLayout {
            flash_origin: flash.start,
            flash_length: flash.end - flash.start,
            ram_origin: ram.start,
            ram_length: ram.end - ram.start,
            source: format!("chip {} (probe-rs target database)", t.name),
        },
    })
}

/// Up to five chip names close to `name`: prefix matches first, then by edit distance.
fn suggest(registry: &Registry, name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let mut all: Vec<String> = registry
        .families()
        .iter()
        .flat_map(|f| f.variants.iter().map(|v| v.name.clone()))
        .collect();
    all.sort();
    all.dedup();
    let mut scored: Vec<(usize, &String)> = all
        .iter()
        .map(|n| {
            let l = n.to_ascii_lowercase();
            let prefix = l.starts_with(&lower) || lower.starts_with(&l);
            (
                if prefix {
                    0
                } else {
                    1 + edit_distance(&lower, &l)
                },
                n,
            )
        })
        .collect();
    scored.sort();
    let close: Vec<&str> = scored
        .iter()
        .take(5)
        .filter(|(d, _)| *d <= 1 + lower.len() / 3)
        .map(|(_, n)| n.as_str())
        .collect();
    if close.is_empty() {
        "; `probe-rs chip list` shows the names probe-rs knows".into()
    } else {
        format!("; did you mean {}?", close.join(", "))
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push(
                (prev[j] + usize::from(ca != *cb))
                    .min(prev[j + 1] + 1)
                    .min(cur[j] + 1),
            );
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Parses `VID:PID[:SERIAL]` (hex ids).
pub fn parse_selector(s: &str) -> Result<DebugProbeSelector, ProbeError> {
    let mut parts = s.splitn(3, ':');
    let (Some(v), Some(p)) = (parts.next(), parts.next()) else {
        return Err(ProbeError::BadSelector(s.into()));
    };
    if u16::from_str_radix(v, 16).is_err() || u16::from_str_radix(p, 16).is_err() {
        return Err(ProbeError::BadSelector(s.into()));
    }
    s.parse().map_err(|_| ProbeError::BadSelector(s.into()))
}

fn describe(p: &DebugProbeInfo) -> String {
    format!(
        "  {:04x}:{:04x}{} {}",
        p.vendor_id,
        p.product_id,
        p.serial_number
            .as_ref()
            .map(|s| format!(":{s}"))
            .unwrap_or_default(),
        p.identifier
    )
}

/// Whether any debug probe is connected.
pub fn any_probe_connected() -> bool {
    !Lister::new().list_all().is_empty()
}

/// Whether an Armv7E-M chip is a Cortex-M7: probe-rs's database names the architecture only, so
/// by family (STM32F7/H7, i.MX RT1000, SAM E70/S70/V70/V71, Kinetis KV5x/KE1x excluded).
fn is_cortex_m7(chip: &str) -> bool {
    let c = chip.to_ascii_uppercase();
    [
        "STM32F7", "STM32H7", "MIMXRT10", "ATSAME70", "ATSAMS70", "ATSAMV70", "ATSAMV71", "SAME70",
        "SAMS70", "SAMV70", "SAMV71",
    ]
    .iter()
    .any(|f| c.starts_with(f))
}

/// The emulated board of a chip's core, with at least the chip's RAM and flash (its sizes are
/// then applied with [`super::qemu::QemuBoard::with_chip_sizes`]): Armv6-M code runs on the
/// micro:bit's Cortex-M0 when the chip fits its 16 KiB of RAM and 256 KiB of flash, else
/// unchanged on the MPS2 AN385; likewise the Cortex-M3 on the LM3S6965 or the AN385.
pub fn emulated_board_for(chip: &ChipFacts) -> &'static str {
    let fits = |board: &str| {
        super::qemu::machine(board).is_some_and(|m| {
            m.ram.1 >= chip.memory.ram_length && m.flash.1 >= chip.memory.flash_length
        })
    };
    match chip.target {
        "thumbv6m-none-eabi" if fits("qemu-m0") => "qemu-m0",
        "thumbv6m-none-eabi" => "qemu-m0-an385",
        "thumbv7m-none-eabi" if fits("qemu-m3") => "qemu-m3",
        "thumbv7m-none-eabi" => "qemu-m3-an385",
        "thumbv8m.main-none-eabihf" | "thumbv8m.main-none-eabi" => "qemu-m55",
        _ if chip.core == "Cortex-M7" => "qemu-m7",
        _ => "qemu-m4",
    }
}

/// Picks a probe from those connected: the one matching `selector`, or the only one.
pub fn choose_probe(
    probes: &[DebugProbeInfo],
    selector: Option<&str>,
) -> Result<DebugProbeInfo, ProbeError> {
    let list = || probes.iter().map(describe).collect::<Vec<_>>().join("\n");
    match selector {
        Some(s) => {
            let sel = parse_selector(s)?;
            probes
                .iter()
                .find(|p| sel.matches_probe(p))
                .cloned()
                .ok_or_else(|| ProbeError::ProbeNotFound {
                    selector: s.into(),
                    list: if probes.is_empty() {
                        "  (none)".into()
                    } else {
                        list()
                    },
                })
        }
        None => match probes {
            [] => Err(ProbeError::NoProbe),
            [one] => Ok(one.clone()),
            _ => Err(ProbeError::SeveralProbes(list())),
        },
    }
}

/// A chip behind a debug probe.
#[derive(Debug, Clone)]
pub struct ProbeBoard {
    pub chip: ChipFacts,
    /// `VID:PID[:SERIAL]`, needed when several probes are connected.
    pub probe: Option<String>,
    pub connect_under_reset: bool,
    pub timeout: Duration,
    /// The `-C target-cpu` the firmware project builds with (its `.cargo/config.toml` or
    /// `RUSTFLAGS`): the bench firmware is built the same way, so it runs the kernels the
    /// firmware will (on `thumbv8m.main` the DSP and Helium paths depend on it).
    pub target_cpu: Option<String>,
}

impl ProbeBoard {
    /// A board for a chip by its probe-rs name.
    pub fn new(chip: &str) -> Result<Self, ProbeError> {
        Ok(ProbeBoard {
            chip: chip_facts(chip)?,
            probe: None,
            connect_under_reset: false,
            timeout: Duration::from_secs(60),
            target_cpu: None,
        })
    }

    fn open(&self) -> Result<Probe, ProbeError> {
        let info = choose_probe(&Lister::new().list_all(), self.probe.as_deref())?;
        info.open().map_err(|source| ProbeError::Open {
            probe: describe(&info),
            source,
        })
    }

    fn run_on_probe(&self, probe: Probe, fw: &Firmware) -> Result<String, ProbeError> {
        let chip = self.chip.name.clone();
        let attach = if self.connect_under_reset {
            probe.attach_under_reset(chip.as_str(), Permissions::default())
        } else {
            probe.attach(chip.as_str(), Permissions::default())
        };
        let mut session = attach.map_err(|source| ProbeError::Attach {
            chip: chip.clone(),
            source,
        })?;
        let mut options = probe_rs::flashing::DownloadOptions::default();
        options.verify = true;
        let loader = probe_rs::flashing::ElfLoader(probe_rs::flashing::ElfOptions::default());
        probe_rs::flashing::download_file_with_options(&mut session, &fw.elf, loader, options)
            .map_err(|source| ProbeError::Flash {
                chip: chip.clone(),
                source,
            })?;
        let mut core = session.core(0)?;
        core.reset_and_halt(Duration::from_secs(1))?;
        core.run()?;
        serve(&mut core, self.timeout)
    }
}

/// Runs the core until the firmware exits, collecting its semihosting console.
pub fn serve(core: &mut probe_rs::Core<'_>, timeout: Duration) -> Result<String, ProbeError> {
    let start = Instant::now();
    let mut console = String::new();
    loop {
        if start.elapsed() > timeout {
            let _ = core.halt(Duration::from_millis(100));
            return Err(ProbeError::Timeout(timeout.as_secs()));
        }
        match core.wait_for_core_halted(Duration::from_millis(100)) {
            Ok(()) => {}
            Err(probe_rs::Error::Timeout) => continue,
            Err(e) => return Err(e.into()),
        }
        match core.status()? {
            CoreStatus::Halted(HaltReason::Breakpoint(BreakpointCause::Semihosting(cmd))) => {
                match cmd {
                    SemihostingCommand::WriteConsole(req) => {
                        console.push_str(&req.read(core)?);
                        core.run()?;
                    }
                    SemihostingCommand::ExitSuccess => return Ok(console),
                    SemihostingCommand::ExitError(d) => {
                        return Err(ProbeError::ExitError(format!("{d:?}"), console))
                    }
                    // Nothing else is used by the bench firmware: keep going.
                    _ => core.run()?,
                }
            }
            CoreStatus::LockedUp => {
                return Err(ProbeError::Halted("core locked up".into(), console))
            }
            CoreStatus::Halted(reason) => {
                return Err(ProbeError::Halted(format!("{reason:?}"), console))
            }
            _ => {}
        }
    }
}

impl Board for ProbeBoard {
    fn name(&self) -> String {
        self.chip.name.clone()
    }
    fn core(&self) -> String {
        self.chip.core.clone()
    }
    fn target(&self) -> &'static str {
        self.chip.target
    }
    fn target_cpu(&self) -> Option<&str> {
        self.target_cpu.as_deref()
    }
    fn memory(&self) -> MemoryLayout {
        self.chip.memory.clone()
    }
    fn timer(&self) -> Timer {
        self.chip.timer
    }
    fn unlock_dwt(&self) -> bool {
        self.chip.unlock_dwt
    }
    fn run(&mut self, fw: &Firmware) -> Result<Measurement, BoardError> {
        check_version(fw)?;
        let probe = self.open()?;
        let console = self.run_on_probe(probe, fw)?;
        let r = report::parse(&console)?;
        check_shape(fw, &r)?;
        // SysTick on M0 counts core clock ticks too: both timers give cycles.
        Ok(Measurement::from_report(
            &self.chip.name,
            &self.chip.core,
            LatencyUnit::Cycles,
            (1, 1),
            fw,
            r,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chip_facts_from_the_database() {
        let f = chip_facts("STM32F746NGHx").unwrap();
        assert_eq!(f.target, "thumbv7em-none-eabihf");
        assert_eq!(f.memory.flash_origin, 0x0800_0000);
        // DTCM (64 KiB) + SRAM1 (240 KiB) + SRAM2 (16 KiB), contiguous from 0x2000_0000.
        assert_eq!(
            (f.memory.ram_origin, f.memory.ram_length),
            (0x2000_0000, 320 << 10),
            "{:?}",
            f.memory
        );
        // nRF52840: RAM is listed twice; we take the data bus address, not the code alias.
        let n = chip_facts("nRF52840_xxAA").unwrap();
        assert_eq!(n.memory.ram_origin, 0x2000_0000, "{:?}", n.memory);
        assert_eq!(n.memory.ram_length, 256 << 10);
        let m0 = chip_facts("nRF51822_xxAA").unwrap();
        assert_eq!(
            (m0.target, m0.timer),
            ("thumbv6m-none-eabi", Timer::SysTick)
        );
    }

    #[test]
    fn each_chip_is_emulated_on_its_core_with_room_for_its_memory() {
        for (chip, board, core) in [
            // Cortex-M0+, 20 KiB RAM: more than the micro:bit's 16 KiB.
            ("STM32L010RBTx", "qemu-m0-an385", "Cortex-M0/M0+"),
            // Cortex-M0+, 144 KiB RAM, 512 KiB flash.
            ("STM32G0B1RETx", "qemu-m0-an385", "Cortex-M0/M0+"),
            // Cortex-M0, 16 KiB RAM and 256 KiB flash: the micro:bit's own chip.
            ("nRF51822_xxAA", "qemu-m0", "Cortex-M0/M0+"),
            ("STM32L151C8Tx", "qemu-m3", "Cortex-M3"),
            ("STM32F746NGHx", "qemu-m7", "Cortex-M7"),
            ("STM32H743ZITx", "qemu-m7", "Cortex-M7"),
            ("STM32L412KBUx", "qemu-m4", "Cortex-M4"),
            ("nRF52840_xxAA", "qemu-m4", "Cortex-M4"),
        ] {
            let f = chip_facts(chip).unwrap_or_else(|e| panic!("{chip}: {e}"));
            assert_eq!(
                (emulated_board_for(&f), f.core.as_str()),
                (board, core),
                "{chip}: {f:?}"
            );
            let m = super::super::qemu::machine(board).unwrap();
            assert!(
                m.ram.1 >= f.memory.ram_length && m.flash.1 >= f.memory.flash_length,
                "{chip}"
            );
            assert_eq!(m.target, f.target, "{chip}");
        }
    }

    #[test]
    fn unknown_chips_get_suggestions() {
        // probe-rs matches prefixes: the full name is what we report.
        assert_eq!(chip_facts("STM32F746NGH").unwrap().name, "STM32F746NGHx");
        let e = chip_facts("STM32F764NGHx").unwrap_err().to_string();
        assert!(e.contains("did you mean") && e.contains("STM32F7"), "{e}");
        let e = chip_facts("definitely-not-a-chip-xyz")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown chip"), "{e}");
    }

    #[test]
    fn probe_selection_errors_say_what_to_do() {
        assert!(choose_probe(&[], None)
            .unwrap_err()
            .to_string()
            .contains("--board qemu-m4"));
        assert!(matches!(
            parse_selector("zz:12"),
            Err(ProbeError::BadSelector(_))
        ));
        assert!(matches!(
            parse_selector("0483"),
            Err(ProbeError::BadSelector(_))
        ));
        assert!(parse_selector("0483:374b").is_ok());
        assert!(matches!(
            choose_probe(&[], Some("0483:374b")),
            Err(ProbeError::ProbeNotFound { .. })
        ));
    }

    /// probe-rs's FakeProbe: attach to a mocked Cortex-M core and read memory through the same
    /// session API the board uses. (The fake executes nothing, so flashing and running are tested
    /// only on real hardware: see the `hardware` tests.)
    #[test]
    fn fake_probe_attaches_and_reads_memory() {
        let probe = probe_rs::probe::fake_probe::FakeProbe::with_mocked_core().into_probe();
        let mut session = probe
            .attach("nrf51822_xxAC", Permissions::default())
            .expect("attach to the fake core");
        let mut core = session.core(0).expect("core 0");
        use probe_rs::MemoryInterface;
        let mut buf = [0u8; 8];
        core.read_8(0x2000_0000, &mut buf).expect("read memory");
    }
}
