//! A **stand-in board** for unit tests of code that drives boards (bench orchestration, search):
//! it runs nothing on any device. It "measures" by running the model through the host
//! interpreter and reports a latency derived from the model's MAC count. Never used for figures.

use super::{Board, BoardError, LatencyUnit, Measurement, MemoryLayout};
use crate::firmware::Firmware;
use crate::report::Timer;

/// The fake board: outputs from the host interpreter, made-up latency `macs * 3 + 1000`.
#[derive(Debug, Clone)]
pub struct FakeBoard {
    pub model: tinynas_model::Model,
    pub inputs: Vec<Vec<u8>>,
    /// Runs so far (callers' tests check how often they measured).
    pub runs: usize,
}

impl Board for FakeBoard {
    fn name(&self) -> String {
        "fake".into()
    }
    fn core(&self) -> String {
        "none (stand-in board)".into()
    }
    fn target(&self) -> &'static str {
        "thumbv7em-none-eabihf"
    }
    fn latency_unit(&self) -> LatencyUnit {
        LatencyUnit::Instructions
    }
    fn memory(&self) -> MemoryLayout {
        MemoryLayout {
            flash_origin: 0,
            flash_length: 1 << 20,
            ram_origin: 0x2000_0000,
            ram_length: 256 << 10,
            source: "fake board".into(),
        }
    }
    fn timer(&self) -> Timer {
        Timer::SysTick
    }
    fn run(&mut self, fw: &Firmware) -> Result<Measurement, BoardError> {
        self.runs += 1;
        let host = tinynas_model::host::HostModel::new(&self.model)
            .map_err(|e| BoardError::Io(std::io::Error::other(e.to_string())))?;
        let outputs = self
            .inputs
            .iter()
            .map(|x| {
                let r = match self.model.input_type {
                    tinynas_model::InputType::U8 => host.run(tinynas_model::host::Input::U8(x)),
                    tinynas_model::InputType::I8 => {
                        let v: Vec<i8> = x.iter().map(|&b| b as i8).collect();
                        host.run(tinynas_model::host::Input::I8(&v))
                    }
                };
                r.map_err(|e| BoardError::Io(std::io::Error::other(e.to_string())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let lat = self.model.macs() * 3 + 1000;
        Ok(Measurement {
            board: self.name(),
            core: self.core(),
            unit: LatencyUnit::Instructions,
            latency: vec![lat; outputs.len()],
            per_step: Vec::new(),
            stack_peak_bytes: 512,
            stack_size_bytes: 64 << 10,
            sizes: fw.sizes,
            arena_bytes: fw.arena_bytes as u64,
            outputs,
            traces: Vec::new(),
        })
    }
}
