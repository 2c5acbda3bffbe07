//! The QEMU boards, for real: bench firmware built for each board's target and run under
//! `qemu-system-arm` (installed by .ci/run). Needs the Rust targets of .ci/run.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use cargo_tinynas::bench::{self, Options};
use cargo_tinynas::board::qemu::{machine, QemuBoard, MACHINES};
use cargo_tinynas::board::{Board, BoardError, LatencyUnit};
use tinynas_model::random::{network, Config, SplitMix};

fn cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bench-cache")
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures")
            .join(name),
    )
    .unwrap()
}

/// One input, default options: the firmware and its outcome.
fn run1(bytes: &[u8], b: &mut QemuBoard) -> bench::Outcome {
    bench::run(
        bytes,
        b,
        &Options {
            inputs: 1,
            ..Options::default()
        },
        &cache(),
        |_| {},
    )
    .unwrap()
}

fn board(name: &str) -> QemuBoard {
    QemuBoard::new(machine(name).unwrap())
}

/// Random networks from the Foundation generator on all five boards: the device's outputs equal
/// the host reference bit for bit.
#[test]
fn random_models_on_all_five_boards_match_the_host() {
    let mut rng = SplitMix(0xB0A2D);
    let cfg = Config {
        max_side: 10,
        max_channels: 6,
        max_layers: 5,
        residual: 0.3,
    };
    for (i, m) in MACHINES.iter().enumerate() {
        for k in 0..3 {
            let model = network(&mut rng, &cfg);
            let bytes = tinynas_model::format::to_bytes(&model);
            let mut b = QemuBoard::new(m);
            let opts = Options {
                inputs: 3,
                seed: (i * 10 + k) as u64,
                ..Options::default()
            };
            let o = bench::run(&bytes, &mut b, &opts, &cache(), |_| {})
                .unwrap_or_else(|e| panic!("{}: {e}", m.board));
            assert!(
                o.outputs_match(),
                "{}: network {k}: device {:?} != host {:?}",
                m.board,
                o.measurement.outputs,
                o.host_outputs
            );
            assert_eq!(o.measurement.unit, LatencyUnit::Instructions);
            assert!(
                o.measurement.latency.iter().all(|&l| l > 0 && l < 1 << 40),
                "{:?}",
                o.measurement.latency
            );
        }
    }
}

/// The emulator counts instructions exactly: the same firmware run twice gives the same figures.
#[test]
fn two_runs_give_identical_instruction_counts() {
    let bytes = fixture("nanonas-k8-c3.tnas");
    let mut b = board("qemu-m4");
    let opts = Options {
        inputs: 2,
        per_layer: true,
        ..Options::default()
    };
    let first = bench::run(&bytes, &mut b, &opts, &cache(), |_| {}).unwrap();
    let second = b.run(&first.firmware).unwrap();
    assert_eq!(first.measurement.latency, second.latency);
    assert_eq!(first.measurement.per_step, second.per_step);
    assert_eq!(first.measurement.stack_peak_bytes, second.stack_peak_bytes);
    assert!(first.outputs_match());
    // Per-layer times account for the whole inference (up to the timer reads between layers).
    let sum: u64 = first.measurement.per_step.iter().sum();
    let total = first.measurement.latency[1];
    assert!(
        sum <= total + 400 && sum + 2000 >= total,
        "layers {sum} vs total {total}"
    );
}

/// Stack painting: a known-size buffer on the stack moves the measured peak by its size. The
/// function holding the buffer also saves a register and keeps 8-byte alignment, so its frame grows
/// by the buffer plus a few bytes (8 on the Cortex-M4 build): the test allows up to 16.
#[test]
fn stack_buffer_moves_the_measured_peak_by_its_size() {
    let bytes = fixture("all-ops.tnas");
    let mut b = board("qemu-m4");
    let base = run1(&bytes, &mut b);
    let padded = bench::run(
        &bytes,
        &mut b,
        &Options {
            inputs: 1,
            extra_stack_bytes: 4096,
            ..Options::default()
        },
        &cache(),
        |_| {},
    )
    .unwrap();
    let moved = padded.measurement.stack_peak_bytes - base.measurement.stack_peak_bytes;
    assert!(
        (4096..=4096 + 16).contains(&moved),
        "the peak moved by {moved} bytes for a 4096-byte buffer"
    );
    // The painted stack below the buffer is measured too: a bigger buffer moves it further.
    let padded2 = bench::run(
        &bytes,
        &mut b,
        &Options {
            inputs: 1,
            extra_stack_bytes: 8192,
            ..Options::default()
        },
        &cache(),
        |_| {},
    )
    .unwrap();
    assert_eq!(
        padded2.measurement.stack_peak_bytes - padded.measurement.stack_peak_bytes,
        4096
    );
}

/// A guest that does not finish in time is an error, not a hang of the tool.
#[test]
fn a_hung_guest_times_out_with_a_clear_error() {
    let bytes = fixture("nanonas-k8-c3.tnas");
    let mut b = board("qemu-m4");
    let o = run1(&bytes, &mut b);
    let mut quick = board("qemu-m4");
    quick.timeout = Duration::from_millis(1);
    match quick.run(&o.firmware) {
        Err(e @ BoardError::Timeout { .. }) => {
            assert!(e.to_string().contains("did not finish"));
            // A search rejects such a candidate and goes on.
            let why = bench::BenchError::from(e).unmeasurable();
            assert!(
                why.as_deref()
                    .is_some_and(|w| w.contains("did not finish within")),
                "{why:?}"
            );
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

/// Firmware for one machine run on another crashes (its stack is outside the other's RAM): a clear
/// error, never a hang.
#[test]
fn a_crashing_guest_is_a_clear_error() {
    let bytes = fixture("all-ops.tnas");
    let mut m4 = board("qemu-m4");
    let o = run1(&bytes, &mut m4);
    let mut m0 = board("qemu-m0");
    m0.timeout = Duration::from_secs(20);
    let e = m0.run(&o.firmware).unwrap_err();
    assert!(
        matches!(
            e,
            BoardError::Crashed { .. } | BoardError::Report(_) | BoardError::Timeout { .. }
        ),
        "{e:?}"
    );
}

/// qemu-m4 linked as a chip with `kib` KiB of RAM (and 256 KiB of flash).
fn small_chip_on_qemu_m4(kib: u64) -> QemuBoard {
    let mut b = board("qemu-m4");
    b.memory = Some(cargo_tinynas::board::MemoryLayout {
        flash_origin: 0,
        flash_length: 256 << 10,
        ram_origin: 0x2000_0000,
        ram_length: kib << 10,
        source: format!("a test chip with {kib} KiB RAM"),
    });
    b
}

/// A model too large for the chip's RAM fails at link time with a message that says so.
#[test]
fn a_model_too_big_for_the_ram_fails_to_link_with_a_clear_message() {
    let bytes = fixture("nanonas-k8-c3.tnas"); // 11 KiB arena
    let mut b = small_chip_on_qemu_m4(8);
    let e = bench::run(
        &bytes,
        &mut b,
        &Options {
            inputs: 1,
            ..Options::default()
        },
        &cache(),
        |_| {},
    )
    .unwrap_err();
    // The model's fault, not the tool's: a search journals it as over budget and goes on,
    // with the linker's own words.
    let why = e.unmeasurable().unwrap_or_else(|| panic!("{e}"));
    assert!(
        why.contains("does not fit the board") && why.contains("region 'RAM'"),
        "{why}"
    );
    let e = e.to_string();
    assert!(e.contains("does not fit the RAM"), "{e}");
    assert!(e.contains("its 1 test input(s)"), "{e}");
}

/// qemu-m4 linked as a chip with `flash` bytes of flash (and 64 KiB of RAM).
fn chip_with_flash(flash: u64) -> QemuBoard {
    let mut b = board("qemu-m4");
    b.memory = Some(cargo_tinynas::board::MemoryLayout {
        flash_origin: 0,
        flash_length: flash,
        ram_origin: 0x2000_0000,
        ram_length: 64 << 10,
        source: format!("a test chip with {flash} bytes of flash"),
    });
    b
}

/// On an emulated chip, the bench's test inputs do not count against the chip's flash (the
/// chip's firmware does not carry them): a model whose firmware fits without them is measured
/// however many inputs the bench carries, and one that does not fit fails to link.
#[test]
fn the_bench_inputs_do_not_count_against_an_emulated_chips_flash() {
    let bytes = fixture("nanonas-k8-c3.tnas");
    let opts = Options {
        inputs: 4,
        ..Options::default()
    };
    let o = bench::run(&bytes, &mut board("qemu-m4"), &opts, &cache(), |_| {}).unwrap();
    let inputs: u64 = o.inputs.iter().map(|i| i.len() as u64).sum();
    let without = o.measurement.sizes.flash() - inputs;
    assert!(inputs > 4096, "{inputs}");
    // Room for the model and the harness, not for the inputs too.
    let fits = without + 1024;
    let o = bench::run(&bytes, &mut chip_with_flash(fits), &opts, &cache(), |_| {}).unwrap();
    assert_eq!(o.measurement.sizes.flash() - inputs, without);
    let e = bench::run(
        &bytes,
        &mut chip_with_flash(without - 1024),
        &opts,
        &cache(),
        |_| {},
    )
    .unwrap_err();
    let why = e.unmeasurable().unwrap_or_else(|| panic!("{e}"));
    assert!(why.contains("region 'FLASH'"), "{why}");
}

/// A stack that runs into the statics is an error that says so (never a silent mismatch or a
/// figure), and a search would reject the candidate.
#[test]
fn a_stack_overflow_is_caught() {
    let bytes = fixture("nanonas-k8-c3.tnas"); // 11 KiB arena
    let mut b = small_chip_on_qemu_m4(16);
    let run = |b: &mut QemuBoard, extra_stack_bytes| {
        bench::run(
            &bytes,
            b,
            &Options {
                inputs: 1,
                extra_stack_bytes,
                ..Options::default()
            },
            &cache(),
            |_| {},
        )
    };
    // Without the extra buffer the model fits and measures.
    let fits = run(&mut b, 0).unwrap();
    assert!(fits.outputs_match());
    let m = &fits.measurement;
    // A buffer that takes the stack a few hundred bytes past its end, into the small statics
    // just below it (nothing faults): the painted stack is used to its bottom.
    let pad = (m.stack_size_bytes - m.stack_peak_bytes + 256) as usize;
    let e = run(&mut b, pad).unwrap_err();
    assert!(
        matches!(e, bench::BenchError::StackOverflow { size, .. } if size == m.stack_size_bytes),
        "{e}"
    );
    assert!(e
        .unmeasurable()
        .is_some_and(|w| w.contains("stack overflowed")));
    // With 8 KiB more, the stack runs into the arena: the model's writes there clobber the
    // kernels' frames, a hard fault whose stack pointer is below the stack's end.
    let e = run(&mut b, 8192).unwrap_err();
    let why = e.unmeasurable().unwrap_or_else(|| panic!("{e}"));
    assert!(why.contains("stack overflowed"), "{why}");
    assert!(e.to_string().contains("stack overflow"), "{e}");
}

/// `cargo tinynas bench --model tests/fixtures/<fixture> <args> --message-format json`: asserts
/// success and one JSON object on stdout, and returns it.
fn cli_bench_json(fixture: &str, args: &[&str]) -> serde_json::Value {
    let out = common::tinynas()
        .args(["bench", "--model"])
        .arg(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/fixtures")
                .join(fixture),
        )
        .args(args)
        .args(["--message-format", "json"])
        .env("TINYNAS_CACHE_DIR", cache())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout).unwrap();
    assert_eq!(line.lines().count(), 1, "one JSON object per line");
    serde_json::from_str(&line).unwrap()
}

/// The CLI on the committed fixture: exit 0, JSON with the instruction count, peak SRAM and the
/// match flag.
#[test]
fn cli_bench_json_on_the_fixture() {
    let j = cli_bench_json("nanonas-k8-c3.tnas", &["--board", "qemu-m4", "--per-layer"]);
    assert_eq!(j["latency_unit"], "instructions");
    assert!(j["instructions"].as_u64().unwrap() > 1_000_000);
    assert!(j["peak_sram_bytes"].as_u64().unwrap() > j["sram"]["arena_bytes"].as_u64().unwrap());
    assert_eq!(j["outputs_match_host"], true);
    // The first convolution reads the u8 pixels itself: no conversion step, 9 kernel calls.
    let layers = j["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 9);
    assert_eq!(layers[0]["op"], "Conv2d");
}

/// Usage errors name the fix.
#[test]
fn cli_unknown_board_says_which_exist() {
    // A model that exists, so that the board is what fails.
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/nanonas-k8-c3.tnas"
    );
    let out = common::tinynas()
        .args(["bench", "--model", model, "--board", "qemu-m9"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "a usage error");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown board \"qemu-m9\""), "{err}");
    for board in ["qemu-m0", "qemu-m4", "qemu-m55"] {
        assert!(err.contains(board), "names {board}: {err}");
    }
}

/// Without QEMU (a PATH that has no `qemu-system-arm`) or without a debug probe, `bench` exits 5
/// ("no board") at once, before it builds a firmware, with the command that fixes it.
#[test]
fn cli_without_qemu_or_probe_exits_5_before_building() {
    if cargo_tinynas::board::probe::any_probe_connected() {
        eprintln!("skipped: a debug probe is connected to this machine");
        return;
    }
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/nanonas-k8-c3.tnas"
    );
    let empty = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no-qemu-path");
    std::fs::create_dir_all(&empty).unwrap();
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no-board-cache");
    let _ = std::fs::remove_dir_all(&cache);
    for (args, path, says) in [
        (
            &["--board", "qemu-m4"][..],
            Some(&empty),
            "qemu-system-arm was not found: install it (Debian/Ubuntu: `sudo apt-get install -y qemu-system-arm`",
        ),
        (&["--chip", "STM32F746NGHx"][..], None, "no debug probe found"),
    ] {
        let mut c = common::tinynas();
        c.args(["bench", "--model", model])
            .args(args)
            .env("TINYNAS_CACHE_DIR", &cache);
        if let Some(p) = path {
            c.env("PATH", p);
        }
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!err.contains("building"), "{args:?} built first: {err}");
        assert!(!cache.exists(), "{args:?} wrote a firmware project");
    }
}

/// The emulator linked with a real chip's sizes (at the machine's addresses) runs and reports.
#[test]
fn cli_qemu_with_a_chip_uses_its_sizes() {
    let j = cli_bench_json(
        "all-ops.tnas",
        &[
            "--board",
            "qemu-m4",
            "--chip",
            "nRF52840_xxAA",
            "--inputs",
            "1",
        ],
    );
    assert_eq!(j["outputs_match_host"], true);
    // nRF52840 has 256 KiB of RAM: the stack is what is left after the statics.
    let s = &j["sram"];
    assert_eq!(
        s["stack_size_bytes"].as_u64().unwrap() + s["static_bytes"].as_u64().unwrap(),
        256 << 10
    );
}

/// A firmware whose report format version differs from the host's is refused before it runs.
#[test]
fn a_firmware_of_another_report_version_is_refused() {
    let bytes = fixture("all-ops.tnas");
    let mut b = board("qemu-m4");
    let o = run1(&bytes, &mut b);
    let mut other = o.firmware.clone();
    other.report_version += 1;
    let e = b.run(&other).unwrap_err();
    assert!(matches!(e, BoardError::VersionMismatch { .. }), "{e:?}");
    assert!(e.to_string().contains("rebuild the bench firmware"), "{e}");
}

/// `--opt-level` builds the bench firmware as a firmware with that profile is built: the report
/// says which, `s` gives smaller code than `3`, and both run bit-exact.
#[test]
fn cli_bench_opt_level_trades_code_size() {
    let run = |level: &str| {
        let j = cli_bench_json(
            "evolve-dw.tnas",
            &["--board", "qemu-m4", "--inputs", "1", "--opt-level", level],
        );
        assert_eq!(j["opt_level"], level);
        assert_eq!(j["outputs_match_host"], true);
        j["flash"]["text_bytes"].as_u64().unwrap()
    };
    let (fast, small) = (run("3"), run("s"));
    assert!(
        small < fast,
        "opt-level s: {small} bytes of code, 3: {fast}"
    );
}

/// `--debug` builds the bench firmware with that profile's debug info, as a firmware's release
/// build with it (cargo's default is none): the report says which, the ELF carries the debug
/// info only when asked, and both run bit-exact.
#[test]
fn cli_bench_debug_is_the_firmware_s() {
    let run = |debug: &str| {
        let j = cli_bench_json(
            "evolve-dw.tnas",
            &["--board", "qemu-m4", "--inputs", "1", "--debug", debug],
        );
        assert_eq!(j["debug"], debug);
        assert_eq!(j["outputs_match_host"], true);
        let elf = PathBuf::from(j["firmware"].as_str().unwrap());
        std::fs::metadata(elf).unwrap().len()
    };
    let (with, without) = (run("true"), run("false"));
    assert!(
        with > 2 * without,
        "ELF with debug info: {with} bytes, without: {without}"
    );
}
