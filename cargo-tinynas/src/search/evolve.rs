//! The `evolve` strategy: seeded evolution over [`Blocks`], training only the candidates the
//! latency table and the memory planner predict to fit.

use super::*;

impl Searcher<'_> {
    /// Whether an untrained architecture is predicted to fit: arena and parameter bytes exactly,
    /// latency from the table when it knows every kind of layer (else it is left to the board).
    pub(super) fn predicted_fit(&self, arch: Arch) -> bool {
        let Some(model) = self.shape_model(arch) else {
            return false;
        };
        let b = &self.s.budgets;
        let arena = tinynas_model::plan::plan(&model).arena_bytes as u64;
        let params: u64 = model.nodes.iter().map(|n| n.param_bytes() as u64).sum();
        if arena > b.ram_bytes || params > b.flash_bytes {
            return false;
        }
        match (
            b.latency_cycles,
            self.table.as_ref().and_then(|t| t.predict(&model)),
        ) {
            (Some(budget), Some(p)) => p <= budget,
            _ => true,
        }
    }

    /// The evolutionary search over [`Blocks`]; the best candidate that fits.
    pub(super) fn evolve(
        &mut self,
        population: usize,
        generations: usize,
        candidates: &mut Vec<Entry>,
        on: &mut dyn FnMut(Event<'_>),
    ) -> Result<Option<Entry>, SearchError> {
        let mut rng = SplitMix(self.s.seed ^ 0xE70_1E5);
        // The data's own resolution only: a smaller one would need a resize in the firmware that
        // neither the generated crate provides nor any figure counts (`run` refuses non-square
        // inputs for this strategy).
        let res_choices = [self.base.h];
        let mut seen = std::collections::BTreeSet::new();
        let population = population.max(2);
        let mut generation: Vec<Arch> = Vec::new();
        for _ in 0..population * 50 {
            if generation.len() == population {
                break;
            }
            let a = random_blocks(&mut rng, &res_choices);
            if seen.insert(a.to_string()) && self.predicted_fit(a) {
                generation.push(a);
            }
        }
        let score = |e: &Entry| e.float_val.unwrap_or(0.0);
        let mut fitting: Vec<(Arch, Entry)> = Vec::new();
        for g in 0..=generations {
            for &arch in &generation {
                if self.stop.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                let Some((e, _)) =
                    self.evaluate(arch, EntryKind::Candidate, self.s.proxy_epochs, on)?
                else {
                    return Ok(None);
                };
                candidates.push(e.clone());
                if e.status == Status::Fits {
                    fitting.push((arch, e));
                }
            }
            if g == generations {
                self.stopped_because = format!(
                    "ran the first generation and {generations} more of {population} candidates each (--generations, --population)"
                );
                break;
            }
            // Parents: the better half of everything that fitted so far.
            fitting.sort_by(|a, b| score(&b.1).total_cmp(&score(&a.1)));
            let parents: Vec<Arch> = fitting
                .iter()
                .take(population.div_ceil(2))
                .map(|(a, _)| *a)
                .collect();
            generation.clear();
            if parents.is_empty() {
                break;
            }
            for _ in 0..population * 50 {
                if generation.len() == population {
                    break;
                }
                let p = parents[rng.int(0, parents.len() as i64 - 1) as usize];
                let child = mutate(&mut rng, p, &res_choices);
                if seen.insert(child.to_string()) && self.predicted_fit(child) {
                    generation.push(child);
                }
            }
        }
        fitting.sort_by(|a, b| score(&b.1).total_cmp(&score(&a.1)));
        Ok(fitting.into_iter().next().map(|(_, e)| e))
    }
}

fn pick<T: Copy>(rng: &mut SplitMix, v: &[T]) -> T {
    v[rng.int(0, v.len() as i64 - 1) as usize]
}

/// A random network of the `evolve` space.
pub fn random_blocks(rng: &mut SplitMix, res: &[usize]) -> Arch {
    let n = rng.int(2, 5) as usize;
    let mut b = Blocks {
        res: pick(rng, res) as u16,
        n: n as u8,
        blocks: [Block::default(); MAX_BLOCKS],
    };
    // The stem is a plain convolution: a depthwise one would see only the image's 1-3 channels.
    b.blocks[0] = Block {
        k: 3,
        stride: 1,
        out: pick(rng, &[4u16, 6, 8, 12, 16]),
        sep: false,
    };
    for i in 1..n {
        let prev = f64::from(b.blocks[i - 1].out);
        b.blocks[i] = Block {
            k: pick(rng, &[3u8, 5]),
            stride: if rng.chance(0.6) { 2 } else { 1 },
            out: ((prev * pick(rng, &[1.0, 1.5, 2.0])).round() as u16).clamp(4, 96),
            sep: rng.chance(0.5),
        };
    }
    Arch::Blocks(b)
}

/// One random change: a width, a kernel size, a stride, plain vs depthwise-separable, a block more
/// or less, or the resolution.
pub fn mutate(rng: &mut SplitMix, arch: Arch, res: &[usize]) -> Arch {
    let Arch::Blocks(mut b) = arch else {
        return arch;
    };
    let n = usize::from(b.n);
    let i = rng.int(0, n as i64 - 1) as usize;
    let j = rng.int(1, (n as i64 - 1).max(1)) as usize;
    match rng.int(0, 6) {
        0 => {
            let o = f64::from(b.blocks[i].out);
            let f = if rng.chance(0.5) { 1.5 } else { 1.0 / 1.5 };
            b.blocks[i].out = ((o * f).round() as u16).clamp(4, 128);
        }
        1 if n > 1 => b.blocks[j].k = if b.blocks[j].k == 3 { 5 } else { 3 },
        2 if n > 1 => b.blocks[j].stride = 3 - b.blocks[j].stride,
        3 if n < MAX_BLOCKS => {
            let last = b.blocks[n - 1];
            b.blocks[n] = Block {
                k: 3,
                stride: pick(rng, &[1u8, 2]),
                out: last.out,
                sep: rng.chance(0.5),
            };
            b.n += 1;
        }
        5 if n > 1 => b.blocks[j].sep = !b.blocks[j].sep,
        4 if n > 2 => {
            for x in j..n - 1 {
                b.blocks[x] = b.blocks[x + 1];
            }
            b.blocks[n - 1] = Block::default();
            b.n -= 1;
        }
        _ => b.res = pick(rng, res) as u16,
    }
    Arch::Blocks(b)
}
