//! The `evolve` strategy: seeded evolution over [`Blocks`], training only the candidates the
//! latency table and the memory planner predict to fit.

use super::*;

impl Searcher<'_> {
    /// What an untrained architecture is predicted to need: peak SRAM and flash (its arena and
    /// parameter bytes, exact from the planner, plus what the board's measured firmware took
    /// besides them) and its latency when the table knows every kind of its layers. `None` when
    /// it does not build.
    pub(super) fn predicted_needs(&self, arch: Arch) -> Option<(u64, u64, Option<u64>)> {
        Some(self.needs_of(&self.shape_model(arch)?))
    }

    /// [`Self::predicted_needs`] of a model already built (a trained one has the same sizes as
    /// its architecture's shape model).
    pub(super) fn needs_of(&self, model: &tinynas_model::Model) -> (u64, u64, Option<u64>) {
        let arena = tinynas_model::plan::plan(model).arena_bytes as u64;
        let params = model.param_bytes() as u64;
        let latency = self.table.as_ref().and_then(|t| t.predict(model));
        // The kernels' and harness's code and the stack, as measured on this board: without
        // them, networks grown to the flash budget by their parameters alone were trained and
        // then did not link (the STM32L010 search without probes: three, 2 to 5 KB over its 128 KiB).
        let over = match (&self.table, predict::families(model)) {
            (Some(t), Ok(f)) => t.overhead(&f),
            _ => predict::Overhead::default(),
        };
        (arena + over.sram_bytes, params + over.flash_bytes, latency)
    }

    /// Whether an untrained architecture is predicted to fit: its arena and parameter bytes
    /// exactly, plus the SRAM and flash the firmware measured on the board took besides them
    /// ([`predict::Table::overhead`]); latency from the table when it knows every kind of layer
    /// (else it is left to the board).
    pub(super) fn predicted_fit(&self, arch: Arch) -> bool {
        self.predicted_within(arch, 1.0, true)
    }

    /// Whether an architecture is predicted to fit within `share` of every budget. A latency
    /// the table cannot predict yet counts as fitting when `unknown_latency_fits` (growing says
    /// no: without a prediction, a network widened to the memory budgets would mostly be too
    /// slow).
    fn predicted_within(&self, arch: Arch, share: f64, unknown_latency_fits: bool) -> bool {
        let Some((arena, params, latency)) = self.predicted_needs(arch) else {
            return false;
        };
        let b = &self.s.budgets;
        let within = |need: u64, budget: u64| need as f64 <= share * budget as f64;
        within(arena, b.ram_bytes)
            && within(params, b.flash_bytes)
            && match (b.latency_cycles, latency) {
                (None, _) => true,
                (Some(budget), Some(p)) => within(p, budget),
                (Some(_), None) => unknown_latency_fits,
            }
    }

    /// Budget pressure: the architecture with every width scaled by the largest of 1.25x to 4x
    /// that is still predicted to fit in [`GROW_SHARE`] of each budget (unchanged when none is,
    /// or when the latency of one of its layers cannot be predicted yet).
    pub(super) fn grow(&self, arch: Arch) -> Arch {
        let mut best = arch;
        for f in [1.25, 1.5, 2.0, 2.5, 3.0, 4.0] {
            let g = scale_widths(arch, f);
            if g == best || !self.predicted_within(g, GROW_SHARE, false) {
                break;
            }
            best = g;
        }
        best
    }

    /// Whether the time budget leaves room for more candidates: the search's time so far
    /// ([`Self::seconds_used`]), plus `promotions` trainings of three times the proxy epochs
    /// (the promotion rung still to come) and the finalists' retraining (two with `evolve`'s
    /// families), both estimated from
    /// `best`'s seconds per epoch (its measuring included, so on the safe side), are within
    /// `--time-budget`. Until a candidate fits (`best` is `None`) the search goes on: it never
    /// ends with nothing.
    pub(super) fn time_left(&self, best: Option<&Entry>, promotions: usize) -> bool {
        let (Some(budget), Some(best)) = (self.s.time_budget, best) else {
            return true;
        };
        let per_epoch = best.seconds / best.epochs.max(1) as f64;
        // `evolve` with families may retrain two finalists.
        let finals = if self.families() { 2 } else { 1 };
        let epochs_ahead =
            finals * self.s.final_epochs + promotions * PROMOTED_EPOCHS * self.s.proxy_epochs;
        self.seconds_used() + per_epoch * (epochs_ahead as f64) < budget.as_secs_f64()
    }

    /// Measures the [`PROBES`] whose kinds of layer the latency table does not know yet
    /// (untrained, one input each) and adds their rows to it and to the board's table in the
    /// cache. Without them the first generation is drawn blind to latency: it cannot be grown
    /// towards the budgets, and what the board finds too slow costs a proxy training each. A
    /// probe the board cannot hold is skipped.
    pub(super) fn calibrate(&mut self, on: &mut dyn FnMut(Event<'_>)) -> Result<(), SearchError> {
        let Some(table) = &self.table else {
            return Ok(());
        };
        let mut wanted = Vec::new();
        for arch in probes(self.base.h) {
            let Some(model) = self.shape_model(arch) else {
                continue;
            };
            let new = predict::calls(&model)?
                .iter()
                .any(|(kind, ..)| !table.knows(kind));
            if new {
                wanted.push((arch, model));
            }
        }
        let of = wanted.len();
        for (index, (arch, model)) in wanted.into_iter().enumerate() {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let name = arch.to_string();
            on(Event::Calibrating {
                arch: &name,
                index,
                of,
            });
            let bytes = tinynas_model::format::to_bytes(&model);
            let opts = crate::bench::Options {
                inputs: 1,
                seed: self.s.seed,
                per_layer: true,
                trace: false,
                ..Default::default()
            };
            // An interruption, or a probe this board cannot hold: the next (or none).
            let OnBoard::Measured(o) = self.run_on_board(&bytes, &name, &opts)? else {
                continue;
            };
            let rows = predict::Table::rows_of(&model, &o.measurement.per_step)?;
            let m = &o.measurement;
            let inputs: u64 = o.inputs.iter().map(|i| i.len() as u64).sum();
            let flash = m.sizes.flash().saturating_sub(inputs);
            let sizes = self.sizes_of(arch, flash, m.peak_sram_bytes());
            self.learn(&rows, sizes);
        }
        Ok(())
    }

    /// Whether this is an `evolve` search with its [`Family`]s (not `--evolve-without
    /// families`): each rung keeps a place for each family, a MobileNet-shaped seed joins the
    /// first generation, and up to two finalists are retrained.
    fn families(&self) -> bool {
        matches!(self.s.strategy, Strategy::Evolve { .. }) && !self.s.evolve_without.families
    }

    /// The first generation's seeds: for 3 and 4 cells, NanoNAS's A(k, c) written as blocks
    /// (3x3 convolutions, each cell's downsampling a 2x2 max pool, or, in a search without
    /// pooled blocks, a stride of 2), and with [`Self::families`] a MobileNet-shaped network
    /// ([`mobilenet_blocks`]); each with the largest k predicted to fit in [`GROW_SHARE`] of
    /// every budget. None while the table cannot predict their latency.
    fn seeds(&self) -> Vec<Arch> {
        let pooled = !self.s.evolve_without.pooling;
        let largest = |shape: &dyn Fn(usize) -> Option<Arch>| {
            let mut best = None;
            for k in 2..=64 {
                let Some(a) = shape(k) else { break };
                if !self.predicted_within(a, GROW_SHARE, false) {
                    break;
                }
                best = Some(a);
            }
            best
        };
        let mut out = Vec::new();
        for cells in [3, 4] {
            out.extend(largest(&|k| nanonas_blocks(self.base.h, k, cells, pooled)));
        }
        // With families, a MobileNet-shaped one too: the separable family's start (its
        // networks learn too slowly for the proxy rungs to breed one this deep from chance).
        if self.families() {
            out.extend(largest(&|k| mobilenet_blocks(self.base.h, k)));
        }
        out
    }

    /// The `evolve` search over [`Blocks`], with three rungs of training (successive halving):
    /// each generation screens `3 x population` architectures predicted to fit for one epoch,
    /// trains the best `population` of them for the proxy epochs and measures them on the board,
    /// and breeds the next generation from the best `population / 2` of everything that fitted
    /// ([`breed`]: mutated, then grown towards the budgets). At the end the best few are trained
    /// three times as long. Each of these rungs keeps a place for each [`Family`]
    /// ([`keep_each_family`]). Returns the finalists ([`finalists`]: the best of those, and the
    /// other family's best; the caller retrains each with the final recipe), best first; none
    /// when stopped or when nothing fits. Stops early, keeping the best so far, when the time
    /// budget runs out.
    pub(super) fn evolve(
        &mut self,
        population: usize,
        generations: usize,
        candidates: &mut Vec<Entry>,
        on: &mut dyn FnMut(Event<'_>),
    ) -> Result<Vec<Entry>, SearchError> {
        let mut rng = SplitMix(self.s.seed ^ 0xE70_1E5);
        // The data's own resolution only: a smaller one would need a resize in the firmware that
        // neither the generated crate provides nor any figure counts (`run` refuses non-square
        // inputs for this strategy).
        let res_choices = [self.base.h];
        let mut seen = std::collections::BTreeSet::new();
        let population = population.max(2);
        let without = self.s.evolve_without;
        let screened = if without.screening {
            population
        } else {
            SCREEN_FACTOR * population
        };
        let pooling = !without.pooling;
        let families = self.families();
        // Fresh random networks in every later generation's pool, so that it does not narrow to
        // variants of one family (at the STM32L412's CIFAR-10 budget every candidate from the
        // second generation on was one).
        let fresh = if without.fresh { 0 } else { screened / 3 };
        // The promotion rung's trainings, kept room for while generations run.
        let promoted = population.div_ceil(3);
        let reserved = if without.promotion || promoted < 2 {
            0
        } else {
            promoted
        };
        let by_score = |a: &(Arch, Entry), b: &(Arch, Entry)| rank(&a.1, &b.1);
        let mut fitting: Vec<(Arch, Entry)> = Vec::new();
        let mut pool: Vec<Arch> = Vec::new();
        if !without.seeds {
            for a in self.seeds() {
                if seen.insert(a.to_string()) && self.predicted_fit(a) {
                    pool.push(a);
                }
            }
        }
        for _ in 0..screened * 50 {
            if pool.len() == screened {
                break;
            }
            let grow = |a: Arch| if without.growth { a } else { self.grow(a) };
            let a = draw_fresh(&mut rng, &res_choices, pooling, grow);
            if seen.insert(a.to_string()) && self.predicted_fit(a) {
                pool.push(a);
            }
        }
        'generations: for g in 0..=generations {
            // Rung 1: one epoch each, to rank (without screening, the pool as drawn).
            let mut ranked: Vec<(Arch, Entry)> = Vec::new();
            for &arch in pool.iter().filter(|_| !without.screening) {
                if self.stop.load(Ordering::Relaxed) {
                    return Ok(Vec::new());
                }
                if !self.time_left(fitting.first().map(|f| &f.1), reserved) {
                    self.out_of_time(AHEAD_OF_A_GENERATION);
                    break 'generations;
                }
                let Some((e, _)) = self.evaluate(arch, EntryKind::Screen, 1, on)? else {
                    return Ok(Vec::new());
                };
                candidates.push(e.clone());
                if e.status == Status::Screened {
                    ranked.push((arch, e));
                }
            }
            ranked.sort_by(by_score);
            let mut ranked: Vec<Arch> = if without.screening {
                pool.clone()
            } else {
                ranked.into_iter().map(|(a, _)| a).collect()
            };
            if families {
                keep_each_family(&mut ranked, population, |a| *a);
            }
            // Rung 2: the best of them for the proxy epochs, measured. Each measurement teaches
            // the latency table; a network it now predicts too slow is passed over.
            let mut trained = 0;
            for arch in ranked {
                if trained == population {
                    break;
                }
                if !self.predicted_fit(arch) {
                    continue;
                }
                trained += 1;
                if self.stop.load(Ordering::Relaxed) {
                    return Ok(Vec::new());
                }
                if !self.time_left(fitting.first().map(|f| &f.1), reserved) {
                    self.out_of_time(AHEAD_OF_A_GENERATION);
                    break 'generations;
                }
                let Some((e, _)) =
                    self.evaluate(arch, EntryKind::Candidate, self.s.proxy_epochs, on)?
                else {
                    return Ok(Vec::new());
                };
                candidates.push(e.clone());
                if e.status == Status::Fits {
                    fitting.push((arch, e));
                    fitting.sort_by(by_score);
                }
            }
            if g == generations {
                self.stopped_because = if without.screening {
                    format!("ran the first generation and {generations} more, each training {population} networks (--generations, --population)")
                } else {
                    format!("ran the first generation and {generations} more, each screening {screened} networks for one epoch and training the best {population} (--generations, --population)")
                };
                break;
            }
            // Parents: the best `population / 2` of everything that fitted so far; a third of the
            // pool is drawn fresh. While nothing fits yet, all of it (the table now predicts what
            // it could not for the first generation).
            let mut parents: Vec<Arch> = fitting.iter().map(|(a, _)| *a).collect();
            if families {
                keep_each_family(&mut parents, population.div_ceil(2), |a| *a);
            }
            parents.truncate(population.div_ceil(2));
            pool.clear();
            for _ in 0..screened * 50 {
                if pool.len() == screened {
                    break;
                }
                let grow = |a: Arch| if without.growth { a } else { self.grow(a) };
                let child = if parents.is_empty() || pool.len() < fresh {
                    draw_fresh(&mut rng, &res_choices, pooling, grow)
                } else {
                    let p = parents[rng.int(0, parents.len() as i64 - 1) as usize];
                    breed(&mut rng, p, &res_choices, pooling, &seen, grow)
                };
                if seen.insert(child.to_string()) && self.predicted_fit(child) {
                    pool.push(child);
                }
            }
            if pool.is_empty() {
                self.stopped_because = format!(
                    "no new network predicted to fit the budgets was left to draw after {} generation(s)",
                    g + 1
                );
                break;
            }
        }
        // Rung 3: the best few trained three times as long; the winner is the best of those
        // (a few points of proxy noise no longer decide it). With families, the best of each
        // family among them, each the best of its family there.
        if families {
            keep_each_family(&mut fitting, reserved.max(2), |(a, _)| *a);
        }
        if reserved == 0 || fitting.len() < 2 {
            let ranked: Vec<Entry> = fitting.into_iter().map(|(_, e)| e).collect();
            return Ok(finalists(&ranked, families));
        }
        let leader = fitting[0].1.clone();
        let mut promoted: Vec<Entry> = Vec::new();
        for (arch, _) in fitting.iter().take(reserved) {
            if self.stop.load(Ordering::Relaxed) {
                return Ok(Vec::new());
            }
            if !self.time_left(Some(&leader), 1) {
                self.out_of_time(THE_RETRAINING);
                break;
            }
            let Some((e, _)) = self.evaluate(
                *arch,
                EntryKind::Candidate,
                PROMOTED_EPOCHS * self.s.proxy_epochs,
                on,
            )?
            else {
                return Ok(Vec::new());
            };
            candidates.push(e.clone());
            if e.status == Status::Fits {
                promoted.push(e);
            }
        }
        promoted.sort_by(rank);
        if promoted.is_empty() {
            promoted.push(leader);
        }
        Ok(finalists(&promoted, families))
    }
}

/// The networks `evolve` retrains with the final recipe, from `ranked` (best first): the best,
/// and with `families` the best of the other [`Family`] too, if `ranked` holds one.
pub fn finalists(ranked: &[Entry], families: bool) -> Vec<Entry> {
    let fam = |e: &Entry| e.arch.parse::<Arch>().ok().map(|a| family(&a));
    let mut out: Vec<Entry> = ranked.iter().take(1).cloned().collect();
    if let (true, Some(first)) = (families, ranked.first()) {
        let other = ranked.iter().find(|e| fam(e) != fam(first));
        out.extend(other.cloned());
    }
    out
}

/// The order of candidates, best first: by float validation score; of equal scores (a validation
/// set of a hundred images ties often) the cheaper network, by measured latency, then peak SRAM,
/// then flash, the one the Pareto front keeps (before, the first one measured won the tie).
pub fn rank(a: &Entry, b: &Entry) -> std::cmp::Ordering {
    let score = |e: &Entry| e.float_val.unwrap_or(0.0);
    let cost = |e: &Entry| {
        e.measured
            .as_ref()
            .map(|m| (m.latency, m.peak_sram_bytes, m.flash_bytes))
    };
    score(b)
        .total_cmp(&score(a))
        .then_with(|| cost(a).cmp(&cost(b)))
}

/// What the time budget keeps room for while `evolve`'s generations run.
const AHEAD_OF_A_GENERATION: &str =
    "what follows the generations (the best few trained longer, the winner's retraining)";

/// The promotion rung trains the best few for this many times the proxy epochs (and the time
/// budget keeps room for it at that length).
const PROMOTED_EPOCHS: usize = 3;

/// `evolve` screens this many architectures per candidate it trains for the proxy epochs.
pub const SCREEN_FACTOR: usize = 3;
/// Share of each budget a grown network is predicted to stay within (the latency predictor's
/// error is about 10 %).
pub const GROW_SHARE: f64 = 0.9;
/// Share of new networks that are grown towards the budgets (the others keep their widths, so
/// the search still sees narrow, deep networks).
pub const GROW_CHANCE: f64 = 0.75;

/// Networks that together hold every kind of layer the `evolve` space draws (a test checks
/// it), at resolution `res`: measured untrained before the first generation when the table
/// lacks a kind. The 3x3 stride-1 convolution, the space's commonest, appears twice: as a
/// 3-channel stem and as a 16-to-16 convolution, so that its fit has two shapes to go on.
pub fn probes(res: usize) -> Vec<Arch> {
    // Two downsamplings at most each, so that they build from 8x8 up.
    [
        "3s1x8p,d3s1x16,5s1x16,d5s2x16",
        "3s2x8,d5s1x16,3s1x16,5s2x16",
        "3s1x8,d3s2x16,3s2x16",
    ]
    .iter()
    .filter_map(|b| format!("blocks:r={res},{b}").parse().ok())
    .collect()
}

/// NanoNAS's A(k, c) in the blocks space: a 3x3 convolution with k filters, then `cells` cells of
/// [2x2 max pool, 3x3 convolution] with NanoNAS's widths (`None` when it has too many blocks);
/// not `pooled`: each cell's downsampling is the convolution before it at stride 2 instead.
pub fn nanonas_blocks(res: usize, k: usize, cells: usize, pooled: bool) -> Option<Arch> {
    let ch = tinynas_model::random::nanonas_channels(k, cells);
    if ch.len() > MAX_BLOCKS || ch.iter().any(|&c| c > 128) {
        return None;
    }
    let blocks: Vec<String> = ch
        .iter()
        .enumerate()
        .map(|(i, c)| match (i + 1 < ch.len(), pooled) {
            (true, true) => format!("3s1x{c}p"),
            (true, false) => format!("3s2x{c}"),
            (false, _) => format!("3s1x{c}"),
        })
        .collect();
    format!("blocks:r={res},{}", blocks.join(",")).parse().ok()
}

/// A MobileNet-shaped network in the blocks space: a 3x3 stride-2 convolution with k filters,
/// then six depthwise-separable 3x3 blocks of 2k, 4k, 4k, 8k, 8k and 8k channels (at most 128)
/// downsampling at the second and the fourth (`None` for k above 64 or a map that would not
/// take three stride-2 blocks).
pub fn mobilenet_blocks(res: usize, k: usize) -> Option<Arch> {
    if !(1..=64).contains(&k) || res < 8 {
        return None;
    }
    let w = |f: usize| (f * k).min(128);
    let blocks = [
        format!("3s2x{k}"),
        format!("d3s1x{}", w(2)),
        format!("d3s2x{}", w(4)),
        format!("d3s1x{}", w(4)),
        format!("d3s2x{}", w(8)),
        format!("d3s1x{}", w(8)),
        format!("d3s1x{}", w(8)),
    ];
    format!("blocks:r={res},{}", blocks.join(",")).parse().ok()
}

/// The two families of the `evolve` space that the rungs cannot compare with each other: the
/// proxy epochs rank deep depthwise-separable networks far below plain ones that they beat
/// after the final recipe's epochs (the README's proxy-rank table measures it at the
/// STM32L412's CIFAR-10 budget). So each family keeps a place in every rung
/// ([`keep_each_family`]), and the best of each is retrained with the final recipe; the better
/// int8 validation score wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Family {
    /// Most blocks after the stem are plain convolutions.
    Plain,
    /// Most blocks after the stem are depthwise-separable.
    Separable,
}

/// The [`Family`] of an architecture (NanoNAS's own are plain).
pub fn family(arch: &Arch) -> Family {
    let Arch::Blocks(b) = arch else {
        return Family::Plain;
    };
    let rest = b.blocks().get(1..).unwrap_or(&[]);
    let sep = rest.iter().filter(|x| x.sep).count();
    if rest.is_empty() || 2 * sep <= rest.len() {
        Family::Plain
    } else {
        Family::Separable
    }
}

/// Reorders `ranked` (best first) so that its first `n` hold the best of each [`Family`] that
/// it holds at all: a family missing from them has its best moved up to the last place among
/// them (the others move down one). Unchanged for `n < 2` or where each family is there.
pub fn keep_each_family<T>(ranked: &mut Vec<T>, n: usize, arch_of: impl Fn(&T) -> Arch) {
    if n < 2 || ranked.len() <= n {
        return;
    }
    for f in [Family::Plain, Family::Separable] {
        let head = n.min(ranked.len());
        if ranked[..head].iter().any(|x| family(&arch_of(x)) == f) {
            continue;
        }
        if let Some(j) = (head..ranked.len()).find(|&j| family(&arch_of(&ranked[j])) == f) {
            let x = ranked.remove(j);
            ranked.insert(head - 1, x);
        }
    }
}

/// Every block's width scaled by `f` (rounded, 4 to 128 channels).
pub fn scale_widths(arch: Arch, f: f64) -> Arch {
    let Arch::Blocks(mut b) = arch else {
        return arch;
    };
    let n = usize::from(b.n).min(MAX_BLOCKS);
    for x in &mut b.blocks[..n] {
        x.out = ((f64::from(x.out) * f).round() as u16).clamp(4, 128);
    }
    Arch::Blocks(b)
}

fn pick<T: Copy>(rng: &mut SplitMix, v: &[T]) -> T {
    v[rng.int(0, v.len() as i64 - 1) as usize]
}

/// A random network of the `evolve` space (with pooled blocks when `pooling`).
pub fn random_blocks(rng: &mut SplitMix, res: &[usize], pooling: bool) -> Arch {
    let n = rng.int(2, 5) as usize;
    let mut b = Blocks {
        res: pick(rng, res) as u16,
        n: n as u8,
        blocks: [Block::default(); MAX_BLOCKS],
    };
    // The stem is a plain convolution: a depthwise one would see only the image's 1-3 channels.
    // A stride-2 stem quarters the cost of everything after it (the budget goes into width); a
    // pooled one (NanoNAS's downsampling) keeps the best of four stride-1 responses.
    let pooled = |p: f64| if pooling { p } else { 0.0 };
    let (stride, pool) = downsampling(rng, 0.3, pooled(0.3));
    b.blocks[0] = Block {
        k: 3,
        stride,
        out: pick(rng, &[4u16, 6, 8, 12, 16, 24]),
        sep: false,
        pool,
    };
    for i in 1..n {
        let prev = f64::from(b.blocks[i - 1].out);
        let (stride, pool) = downsampling(rng, 0.35, pooled(0.35));
        b.blocks[i] = Block {
            k: pick(rng, &[3u8, 5]),
            stride,
            out: ((prev * pick(rng, &[1.0, 1.5, 2.0])).round() as u16).clamp(4, 96),
            sep: rng.chance(0.5),
            pool,
        };
    }
    Arch::Blocks(b)
}

/// How a random block downsamples: by a stride-2 convolution (chance `strided`), by a stride-1
/// convolution and a 2x2 max pool (chance `pooled`), or not at all. Returns (stride, pool).
fn downsampling(rng: &mut SplitMix, strided: f64, pooled: f64) -> (u8, bool) {
    let r = rng.real(0.0, 1.0);
    if r < strided {
        (2, false)
    } else if r < strided + pooled {
        (1, true)
    } else {
        (1, false)
    }
}

/// A random network of the space ([`random_blocks`]), grown (`grow`) with chance
/// [`GROW_CHANCE`]: the first generation, and the fresh third of every later one.
fn draw_fresh(
    rng: &mut SplitMix,
    res: &[usize],
    pooling: bool,
    grow: impl Fn(Arch) -> Arch,
) -> Arch {
    let a = random_blocks(rng, res, pooling);
    if rng.chance(GROW_CHANCE) {
        grow(a)
    } else {
        a
    }
}

/// Most changes a bred network is from its parent. The parents change little from one
/// generation to the next, and after some generations every one-change child of theirs has been
/// drawn before: at the STM32L010's CIFAR-10 budget (15 generations in 53 minutes) breeding
/// found no new child predicted to fit from the ninth generation on, and the last seven
/// screened only their fresh third, six random networks each. A child already drawn takes one
/// more change instead.
pub const MAX_CHANGES: usize = 4;

/// A child of `parent`: one random change ([`mutate`]), grown (`grow`) with chance
/// [`GROW_CHANCE`]; while the result was drawn before (in `seen`), one more change, up to
/// [`MAX_CHANGES`] in all. The first child is drawn exactly as before `MAX_CHANGES` existed, so
/// a search whose children are all new takes the same course.
pub fn breed(
    rng: &mut SplitMix,
    parent: Arch,
    res: &[usize],
    pooling: bool,
    seen: &std::collections::BTreeSet<String>,
    grow: impl Fn(Arch) -> Arch,
) -> Arch {
    let mut changed = mutate(rng, parent, res, pooling);
    let grows = rng.chance(GROW_CHANCE);
    let finish = |a: Arch| if grows { grow(a) } else { a };
    let mut child = finish(changed);
    for _ in 1..MAX_CHANGES {
        if !seen.contains(&child.to_string()) {
            break;
        }
        changed = mutate(rng, changed, res, pooling);
        child = finish(changed);
    }
    child
}

/// One random change: a width, a kernel size, a stride (the stem's too), plain vs
/// depthwise-separable, how a block downsamples (a stride-2 convolution or a stride-1 one and a
/// max pool, when `pooling`), a block more or less, or the resolution.
pub fn mutate(rng: &mut SplitMix, arch: Arch, res: &[usize], pooling: bool) -> Arch {
    let Arch::Blocks(mut b) = arch else {
        return arch;
    };
    let n = usize::from(b.n);
    let i = rng.int(0, n as i64 - 1) as usize;
    let j = rng.int(1, (n as i64 - 1).max(1)) as usize;
    match rng.int(0, 7) {
        0 => {
            let o = f64::from(b.blocks[i].out);
            let f = if rng.chance(0.5) { 1.5 } else { 1.0 / 1.5 };
            b.blocks[i].out = ((o * f).round() as u16).clamp(4, 128);
        }
        1 if n > 1 => b.blocks[j].k = if b.blocks[j].k == 3 { 5 } else { 3 },
        2 => b.blocks[i].stride = 3 - b.blocks[i].stride,
        3 if n < MAX_BLOCKS => {
            let last = b.blocks[n - 1];
            b.blocks[n] = Block {
                k: 3,
                stride: pick(rng, &[1u8, 2]),
                out: last.out,
                sep: rng.chance(0.5),
                pool: false,
            };
            b.n += 1;
        }
        5 if n > 1 => b.blocks[j].sep = !b.blocks[j].sep,
        // Striding and pooling swap; a block that does neither starts pooling.
        6 if pooling => {
            let x = &mut b.blocks[i];
            (x.stride, x.pool) = match (x.stride, x.pool) {
                (2, _) => (1, true),
                (_, true) => (2, false),
                _ => (1, true),
            };
        }
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
