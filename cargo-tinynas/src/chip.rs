//! Facts about the chip a firmware is built for, which the board code and the firmware project
//! both use (a leaf: it depends on nothing else here).

/// Flash and RAM of the chip the firmware is linked for (memory.x).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryLayout {
    pub flash_origin: u64,
    pub flash_length: u64,
    pub ram_origin: u64,
    pub ram_length: u64,
    /// Where these figures come from (a QEMU machine, a probe-rs chip, the user's memory.x).
    pub source: String,
}

/// What a latency figure counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LatencyUnit {
    /// Core clock cycles measured on a chip.
    Cycles,
    /// Instructions executed, counted by an emulator (not cycles: an instruction can take several).
    Instructions,
}

impl LatencyUnit {
    pub fn name(self) -> &'static str {
        match self {
            LatencyUnit::Cycles => "cycles",
            LatencyUnit::Instructions => "instructions",
        }
    }
}
