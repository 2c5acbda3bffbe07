//! The emulated board: the bench firmware under `qemu-system-arm` with `-icount shift=0` (one
//! instruction per virtual nanosecond, so SysTick ticks times the machine's ns-per-tick is the
//! number of instructions executed, exactly and repeatably) and semihosting on. Latency is in
//! **instructions**, not cycles.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{
    check_shape, check_version, Board, BoardError, LatencyUnit, Measurement, MemoryLayout,
};
use crate::firmware::Firmware;
use crate::report::{self, Timer};

/// A QEMU machine we support, with the facts checked on these machines (QEMU 7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QemuMachine {
    /// Our board name.
    pub board: &'static str,
    /// QEMU's `-M` name.
    pub machine: &'static str,
    pub core: &'static str,
    pub target: &'static str,
    /// LLVM's name of the core (`-C target-cpu`).
    pub cpu: &'static str,
    pub flash: (u64, u64),
    pub ram: (u64, u64),
    /// Nanoseconds per SysTick tick (core clock source), as a fraction.
    pub ns_per_tick: (u64, u64),
}

/// The supported machines.
pub const MACHINES: [QemuMachine; 7] = [
    QemuMachine {
        board: "qemu-m0",
        machine: "microbit",
        core: "Cortex-M0",
        target: "thumbv6m-none-eabi",
        cpu: "cortex-m0",
        flash: (0, 256 << 10),
        ram: (0x2000_0000, 16 << 10),
        ns_per_tick: (125, 2),
    },
    // Armv6-M code on the MPS2 AN385 (a Cortex-M3 machine with 4 MiB of flash and RAM): the same
    // instructions as on the Cortex-M0 (Thumb-1 is a subset of Thumb-2), counts equal to within one
    // timer tick, with room for models larger than the micro:bit's 16 KiB of RAM.
    QemuMachine {
        board: "qemu-m0-an385",
        machine: "mps2-an385",
        core: "Cortex-M0 (Armv6-M code on an MPS2 AN385)",
        target: "thumbv6m-none-eabi",
        cpu: "cortex-m0",
        flash: (0, 4 << 20),
        ram: (0x2000_0000, 4 << 20),
        ns_per_tick: (40, 1),
    },
    QemuMachine {
        board: "qemu-m3",
        machine: "lm3s6965evb",
        core: "Cortex-M3",
        target: "thumbv7m-none-eabi",
        cpu: "cortex-m3",
        flash: (0, 256 << 10),
        ram: (0x2000_0000, 64 << 10),
        ns_per_tick: (80, 1),
    },
    // The Cortex-M3 on the MPS2 AN385, for Armv7-M chips with more than the LM3S6965's 64 KiB of
    // RAM or 256 KiB of flash.
    QemuMachine {
        board: "qemu-m3-an385",
        machine: "mps2-an385",
        core: "Cortex-M3",
        target: "thumbv7m-none-eabi",
        cpu: "cortex-m3",
        flash: (0, 4 << 20),
        ram: (0x2000_0000, 4 << 20),
        ns_per_tick: (40, 1),
    },
    QemuMachine {
        board: "qemu-m4",
        machine: "mps2-an386",
        core: "Cortex-M4F",
        target: "thumbv7em-none-eabihf",
        cpu: "cortex-m4",
        flash: (0, 4 << 20),
        ram: (0x2000_0000, 4 << 20),
        ns_per_tick: (40, 1),
    },
    QemuMachine {
        board: "qemu-m7",
        machine: "mps2-an500",
        core: "Cortex-M7",
        target: "thumbv7em-none-eabihf",
        cpu: "cortex-m7",
        flash: (0, 4 << 20),
        ram: (0x2000_0000, 4 << 20),
        ns_per_tick: (40, 1),
    },
    QemuMachine {
        board: "qemu-m55",
        machine: "mps3-an547",
        core: "Cortex-M55",
        target: "thumbv8m.main-none-eabihf",
        cpu: "cortex-m55",
        flash: (0, 512 << 10),
        ram: (0x2000_0000, 512 << 10),
        ns_per_tick: (125, 4),
    },
];

/// The default board.
pub const DEFAULT: &str = "qemu-m4";

/// Finds a machine by board name.
pub fn machine(board: &str) -> Option<&'static QemuMachine> {
    MACHINES.iter().find(|m| m.board == board)
}

/// A QEMU board.
#[derive(Debug, Clone)]
pub struct QemuBoard {
    pub machine: &'static QemuMachine,
    /// Longest a run may take (wall clock) before it counts as hung.
    pub timeout: Duration,
    /// Flash and RAM to link for, when emulating a specific chip's limits (defaults to the
    /// machine's memory).
    pub memory: Option<MemoryLayout>,
    /// When emulating a firmware's chip: the `-C target-cpu` that firmware is built with (`None`
    /// inside: it names none), so the bench runs the kernels the firmware will; unset, the
    /// machine's own core.
    pub firmware_cpu: Option<Option<String>>,
}

impl QemuBoard {
    pub fn new(machine: &'static QemuMachine) -> Self {
        QemuBoard {
            machine,
            timeout: Duration::from_secs(120),
            memory: None,
            firmware_cpu: None,
        }
    }

    /// Emulates a chip's limits: its flash and RAM sizes at this machine's addresses (capped at
    /// what the machine has).
    pub fn with_chip_sizes(mut self, chip: &str, flash_length: u64, ram_length: u64) -> Self {
        self.memory = Some(MemoryLayout {
            flash_origin: self.machine.flash.0,
            flash_length: flash_length.min(self.machine.flash.1),
            ram_origin: self.machine.ram.0,
            ram_length: ram_length.min(self.machine.ram.1),
            source: format!(
                "chip {chip}'s flash and RAM sizes on QEMU machine {}",
                self.machine.machine
            ),
        });
        self
    }

    /// The command line, for logs and users who want to run the firmware themselves.
    pub fn command(&self, elf: &std::path::Path) -> Command {
        command(self.machine.machine, elf)
    }
}

/// The `qemu-system-arm` command that runs `elf` on QEMU machine `machine` (e.g.
/// `mps2-an386`), with the semihosting console on stdout and one instruction per tick.
pub fn command(machine: &str, elf: &std::path::Path) -> Command {
    let mut c = Command::new("qemu-system-arm");
    // The semihosting console gets its own chardev on stdout (QEMU 7.2 sends it to the first
    // serial port otherwise).
    c.args([
        "-M", machine, "-display", "none", "-monitor", "none", "-serial", "none",
    ])
    .args(["-chardev", "stdio,id=tinynas", "-icount", "shift=0"])
    .args([
        "-semihosting-config",
        "enable=on,target=native,chardev=tinynas",
        "-kernel",
    ])
    .arg(elf);
    c
}

impl Board for QemuBoard {
    fn name(&self) -> String {
        self.machine.board.to_string()
    }

    fn core(&self) -> String {
        self.machine.core.to_string()
    }

    fn target(&self) -> &'static str {
        self.machine.target
    }

    fn latency_unit(&self) -> LatencyUnit {
        LatencyUnit::Instructions
    }

    fn target_cpu(&self) -> Option<&str> {
        match &self.firmware_cpu {
            Some(cpu) => cpu.as_deref(),
            None => Some(self.machine.cpu),
        }
    }

    fn memory(&self) -> MemoryLayout {
        self.memory.clone().unwrap_or(MemoryLayout {
            flash_origin: self.machine.flash.0,
            flash_length: self.machine.flash.1,
            ram_origin: self.machine.ram.0,
            ram_length: self.machine.ram.1,
            source: format!("QEMU machine {}", self.machine.machine),
        })
    }

    /// An emulated chip's flash grows by the bench's inputs (as far as the machine has flash):
    /// the chip's firmware does not carry them, so the link checks what it does carry, the model
    /// and the harness, against the chip's flash (which a search's and verify's budgets check
    /// without the inputs too). Without it, a network whose firmware fit the chip's flash failed
    /// to link for the bench's test images (a search's two CIFAR-10 images: 6 KiB).
    fn bench_memory(&self, input_bytes: u64) -> MemoryLayout {
        let mut m = self.memory();
        if self.memory.is_some() && input_bytes > 0 {
            let grown = m
                .flash_length
                .saturating_add(input_bytes)
                .min(self.machine.flash.1);
            if grown > m.flash_length {
                m.source = format!(
                    "{}, flash plus the bench's {} bytes of inputs",
                    m.source,
                    grown - m.flash_length
                );
                m.flash_length = grown;
            }
        }
        m
    }

    fn timer(&self) -> Timer {
        // DWT CYCCNT reads 0 under QEMU.
        Timer::SysTick
    }

    fn run(&mut self, fw: &Firmware) -> Result<Measurement, BoardError> {
        check_version(fw)?;
        let mut child = match self
            .command(&fw.elf)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BoardError::QemuMissing)
            }
            Err(e) => return Err(e.into()),
        };
        let mut stdout = child.stdout.take().expect("piped");
        let mut stderr = child.stderr.take().expect("piped");
        let out = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = stdout.read_to_end(&mut s);
            s
        });
        let err = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = stderr.read_to_end(&mut s);
            s
        });
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break Some(s);
            }
            if start.elapsed() > self.timeout {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let console = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
        let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
        let Some(status) = status else {
            return Err(BoardError::Timeout {
                seconds: self.timeout.as_secs(),
                console: tail(&console),
            });
        };
        let r = match report::parse(&console) {
            Ok(r) => r,
            Err(report::ReportError::Missing(_)) if !status.success() => {
                return Err(BoardError::Crashed {
                    status: status.to_string(),
                    console: tail(&console),
                    stderr: tail(&stderr),
                })
            }
            Err(e) => return Err(e.into()),
        };
        check_shape(fw, &r)?;
        Ok(Measurement::from_report(
            self.machine.board,
            self.machine.core,
            LatencyUnit::Instructions,
            self.machine.ns_per_tick,
            fw,
            r,
        ))
    }
}

fn tail(s: &str) -> String {
    let n = s.chars().count();
    s.chars().skip(n.saturating_sub(400)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_firmware_chip_is_benched_with_the_firmware_core() {
        let m55 = machine("qemu-m55").unwrap();
        let mut q = QemuBoard::new(m55);
        assert_eq!(q.target_cpu(), Some("cortex-m55"), "the machine's own core");
        // Emulating a firmware's chip: as the firmware is built.
        q.firmware_cpu = Some(Some("cortex-m33".into()));
        assert_eq!(q.target_cpu(), Some("cortex-m33"));
        q.firmware_cpu = Some(None);
        assert_eq!(q.target_cpu(), None, "a firmware that names no core");
    }
}
