//! The memory planner: tensor liveness and arena offsets (greedy by size, as TF Lite Micro's
//! `GreedyMemoryPlanner`), and the exact peak activation bytes of the plan.
//!
//! Each tensor lives from the node that writes it to the last node that reads it (the model output
//! lives to the end). Kernels do not work in place, so a node's inputs and its output never share
//! bytes. `Reshape` outputs alias their input. The input of an `I8` model is read from the caller's
//! slice and takes no arena bytes; so is a `U8` input read only by convolutions, which gather the
//! raw pixels themselves ([`crate::select::reads_raw_input`]); any other `U8` input is converted
//! into the arena first. A kernel's scratch (im2col columns) is one more buffer, alive during its
//! node's step only, placed by the same greedy pass. A faster kernel's optional scratch (the
//! depthwise padded rows, [`crate::select::optional_scratch_bytes`]) is taken only where the
//! bytes alive at its step stay within the liveness floor without it, and the planned arena does
//! not grow: it costs no SRAM.

use crate::ir::{InputType, Model, Op, TensorId};
use crate::select;

/// Where a tensor's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// The caller's input slice (`I8` models, tensor 0 and its reshapes).
    Input,
    /// `len` bytes at `offset` in the arena.
    Arena { offset: usize, len: usize },
}

/// The plan of a model's activations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// One entry per tensor (0 = input, `i + 1` = node `i`).
    pub locations: Vec<Location>,
    /// One entry per node: its kernel's scratch `(offset, len)` in the arena, if it needs any.
    pub scratch: Vec<Option<(usize, usize)>>,
    /// Bytes the arena must have: the end of the highest placed buffer.
    pub arena_bytes: usize,
    /// The liveness floor: the lower bound of any plan that runs nodes in this order with these
    /// kernels, the largest sum of the buffers (activations and scratch) alive at one step.
    pub live_peak_bytes: usize,
    /// What a planner without reuse would need: the sum of all activation buffers.
    pub naive_bytes: usize,
}

/// Plans the arena of a model. A faster kernel's optional scratch is taken where it keeps both
/// the liveness floor and the planned arena (the greedy placement could otherwise grow).
pub fn plan(model: &Model) -> Plan {
    let with = plan_with(model, true);
    let without = plan_with(model, false);
    if with.arena_bytes <= without.arena_bytes {
        with
    } else {
        without
    }
}

fn plan_with(model: &Model, optional: bool) -> Plan {
    let n = model.nodes.len() + 1;
    // The buffer each tensor lives in (reshapes share their input's).
    let mut root: Vec<TensorId> = (0..n).collect();
    for (i, node) in model.nodes.iter().enumerate() {
        if matches!(node.op, Op::Reshape { .. }) {
            root[i + 1] = root[node.inputs[0]];
        }
    }
    // Step at which each buffer is written (tensor t by node t - 1 at step t; the input at 0) and
    // the last step that reads it.
    let mut first = vec![usize::MAX; n];
    let mut last = vec![0usize; n];
    for (t, &r) in root.iter().enumerate() {
        first[r] = first[r].min(t);
        last[r] = last[r].max(t);
    }
    for (i, node) in model.nodes.iter().enumerate() {
        for &t in &node.inputs {
            let r = root[t];
            last[r] = last[r].max(i + 1);
        }
    }
    last[root[n - 1]] = n; // the output is read after the last node
                           // Buffers `n + i` are node i's scratch, alive at its step (i + 1) only.
    let mut scratch: Vec<usize> = (0..n - 1)
        .map(|i| select::scratch_bytes(model, i))
        .collect();
    let input_outside = model.input_type == InputType::I8 || select::reads_raw_input(model);
    let tensors = root.clone();
    let in_arena = |r: TensorId| r == tensors[r] && !(r == 0 && input_outside);
    // Optional scratch (a faster kernel's) only where it keeps the liveness floor: the bytes
    // alive at its step, with it, stay within the busiest step's without it.
    let live = |step: usize, scratch: &[usize]| -> usize {
        let acts: usize = (0..n)
            .filter(|&r| in_arena(r) && first[r] <= step && step <= last[r])
            .map(|r| model.shape(r).elements())
            .sum();
        acts + step
            .checked_sub(1)
            .and_then(|i| scratch.get(i))
            .copied()
            .unwrap_or(0)
    };
    let floor = (0..=n).map(|s| live(s, &scratch)).max().unwrap_or(0);
    for i in 0..n - 1 {
        let extra = if optional {
            select::optional_scratch_bytes(model, i)
        } else {
            0
        };
        if extra > 0 && scratch[i] == 0 && live(i + 1, &scratch) + extra <= floor {
            scratch[i] = extra;
        }
    }
    for (i, &bytes) in scratch.iter().enumerate() {
        if bytes > 0 {
            root.push(n + i);
            first.push(i + 1);
            last.push(i + 1);
        } else {
            root.push(usize::MAX);
            first.push(usize::MAX);
            last.push(0);
        }
    }
    let size = |r: usize| {
        if r < n {
            model.shape(r).elements()
        } else {
            scratch[r - n]
        }
    };

    let mut order: Vec<usize> = (0..n)
        .filter(|&r| in_arena(r))
        .chain((0..n - 1).filter(|&i| scratch[i] > 0).map(|i| n + i))
        .collect();
    order.sort_by_key(|&r| (std::cmp::Reverse(size(r)), r));
    let mut offsets = vec![0usize; root.len()];
    let mut placed: Vec<usize> = Vec::new();
    for &r in &order {
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&p| first[p] <= last[r] && first[r] <= last[p])
            .map(|&p| (offsets[p], offsets[p] + size(p)))
            .collect();
        busy.sort_unstable();
        let mut at = 0;
        for (start, end) in busy {
            if at + size(r) <= start {
                break;
            }
            at = at.max(end);
        }
        offsets[r] = at;
        placed.push(r);
    }
    let arena_bytes = placed
        .iter()
        .map(|&r| offsets[r] + size(r))
        .max()
        .unwrap_or(0);
    let live_peak_bytes = (0..=n)
        .map(|step| {
            placed
                .iter()
                .filter(|&&r| first[r] <= step && step <= last[r])
                .map(|&r| size(r))
                .sum::<usize>()
        })
        .max()
        .unwrap_or(0);
    let naive_bytes = placed.iter().map(|&r| size(r)).sum();
    let locations = (0..n)
        .map(|t| {
            let r = root[t];
            if in_arena(r) {
                Location::Arena {
                    offset: offsets[r],
                    len: size(t),
                }
            } else {
                Location::Input
            }
        })
        .collect();
    let scratch = (0..n - 1)
        .map(|i| (scratch[i] > 0).then(|| (offsets[n + i], scratch[i])))
        .collect();
    Plan {
        locations,
        scratch,
        arena_bytes,
        live_peak_bytes,
        naive_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::SplitMix;

    /// For random graphs: buffers alive at the same step never overlap, the arena holds them all,
    /// and the plan is never below the live lower bound nor above the naive sum.
    #[test]
    fn plans_are_valid_and_tight() {
        let mut rng = SplitMix(5);
        for _ in 0..300 {
            let m = crate::random::network(&mut rng, &crate::random::Config::default());
            let p = plan(&m);
            assert!(p.live_peak_bytes <= p.arena_bytes && p.arena_bytes <= p.naive_bytes);
            for (i, node) in m.nodes.iter().enumerate() {
                let out = p.locations[i + 1];
                for &t in &node.inputs {
                    if let (
                        Location::Arena { offset: a, len: la },
                        Location::Arena { offset: b, len: lb },
                    ) = (p.locations[t], out)
                    {
                        if !matches!(node.op, Op::Reshape { .. }) {
                            assert!(
                                a + la <= b || b + lb <= a,
                                "node {i} reads and writes the same bytes"
                            );
                        }
                    }
                }
                if let Location::Arena { offset, len } = out {
                    assert!(offset + len <= p.arena_bytes);
                }
                // Scratch overlaps nothing its node reads or writes.
                if let Some((s, sl)) = p.scratch[i] {
                    assert!(s + sl <= p.arena_bytes);
                    for loc in node.inputs.iter().map(|&t| p.locations[t]).chain([out]) {
                        if let Location::Arena { offset, len } = loc {
                            assert!(
                                s + sl <= offset || offset + len <= s,
                                "node {i}: scratch overlaps"
                            );
                        }
                    }
                }
            }
        }
    }
}
