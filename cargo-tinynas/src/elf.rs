//! What the bench firmware ELF says about itself: section sizes (flash and static RAM) and the
//! report format version symbol. Pure functions on bytes, via the `object` crate.

use object::{Object, ObjectSection, ObjectSymbol};

/// Sizes of a firmware image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sizes {
    pub vector_table: u64,
    pub text: u64,
    pub rodata: u64,
    pub data: u64,
    pub bss: u64,
    pub uninit: u64,
    /// RAM of the bench firmware's own result buffers (outputs and times per input, times per
    /// step), which its template puts in `.uninit`: not part of what the model costs a firmware.
    pub bench_buffers: u64,
}

impl Sizes {
    /// Bytes in flash: vector table, code, read-only data, and the initial values of `.data`.
    pub fn flash(&self) -> u64 {
        self.vector_table + self.text + self.rodata + self.data
    }

    /// Bytes of RAM taken before the stack: `.data`, `.bss` and `.uninit`.
    pub fn static_ram(&self) -> u64 {
        self.data + self.bss + self.uninit
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("not a readable ELF file: {0}")]
    Parse(#[from] object::Error),
    #[error("the firmware has no `{0}` symbol: it was not built by this version of cargo-tinynas")]
    MissingSymbol(&'static str),
}

pub const VERSION_SYMBOL: &str = "TINYNAS_BENCH_REPORT_VERSION";

/// Section sizes of an ELF image.
pub fn sizes(elf: &[u8]) -> Result<Sizes, ElfError> {
    let file = object::File::parse(elf)?;
    let mut s = Sizes::default();
    for sec in file.sections() {
        let n = sec.size();
        match sec.name().unwrap_or("") {
            ".vector_table" => s.vector_table += n,
            ".text" => s.text += n,
            ".rodata" => s.rodata += n,
            ".data" => s.data += n,
            ".bss" => s.bss += n,
            ".uninit" => s.uninit += n,
            _ => {}
        }
    }
    // The bench template puts its result buffers, and nothing else, in `.uninit`.
    s.bench_buffers = s.uninit;
    Ok(s)
}

/// The value of the `u32` report version symbol.
pub fn report_version(elf: &[u8]) -> Result<u32, ElfError> {
    let file = object::File::parse(elf)?;
    let sym = file
        .symbols()
        .find(|s| s.name() == Ok(VERSION_SYMBOL))
        .ok_or(ElfError::MissingSymbol(VERSION_SYMBOL))?;
    let section = sym
        .section_index()
        .and_then(|i| file.section_by_index(i).ok())
        .ok_or(ElfError::MissingSymbol(VERSION_SYMBOL))?;
    let data = section.data()?;
    let off = (sym.address() - section.address()) as usize;
    let b = data
        .get(off..off + 4)
        .ok_or(ElfError::MissingSymbol(VERSION_SYMBOL))?;
    Ok(if file.is_little_endian() {
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    } else {
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    })
}
