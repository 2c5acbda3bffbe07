//! The evaluation of one candidate: trained for its epochs, quantised, checked against the
//! budgets from the model alone, then measured on the board (or read back from the journal). A
//! screened candidate (`evolve`'s first rung) is only trained: its validation accuracy ranks it.

use super::*;

impl Searcher<'_> {
    /// Trains, quantises, checks and measures one architecture (or reads it from the journal).
    pub(super) fn evaluate(
        &mut self,
        arch: Arch,
        kind: EntryKind,
        epochs: usize,
        on: &mut dyn FnMut(Event<'_>),
    ) -> Result<Option<(Entry, Vec<u8>)>, SearchError> {
        let s = self.s;
        let name = arch.to_string();
        let final_run = kind == EntryKind::Final;
        if let Some(e) = self.journal.get(kind, &name, epochs).cloned() {
            // The final model is kept next to the journal; a candidate needs no file.
            let bytes = if final_run {
                // Its own file, or winner.tnas, the copy of the final that won.
                [final_file(&name), "winner.tnas".to_string()]
                    .iter()
                    .filter_map(|f| std::fs::read(self.dir.join(f)).ok())
                    .find(|b| Some(crc32fast::hash(b)) == e.model_crc)
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            if !final_run || !bytes.is_empty() {
                if let (Some(p), Some(m)) = (e.predicted_latency, &e.measured) {
                    self.predictions.push((name.clone(), p, m.latency));
                }
                if let (Some(t), Some(rows)) = (self.table.as_mut(), &e.layers) {
                    t.extend(rows);
                }
                if let Some(m) = &e.measured {
                    if let Some(z) = self.sizes_of(arch, m.flash_bytes, m.peak_sram_bytes) {
                        if let Some(t) = self.table.as_mut() {
                            t.add_sizes(z);
                        }
                    }
                }
                on(Event::Evaluated {
                    entry: &e,
                    resumed: true,
                });
                return Ok(Some((e, bytes)));
            }
        }
        let start = Instant::now();
        let mut entry = Entry {
            kind,
            arch: name.clone(),
            seed: s.seed,
            epochs,
            float_val: None,
            int8_val: None,
            int8_test: None,
            params: None,
            macs: None,
            arena_bytes: None,
            measured: None,
            predicted_latency: None,
            predicted_sram_bytes: None,
            predicted_flash_bytes: None,
            layers: None,
            status: Status::Fits,
            seconds: 0.0,
            model_crc: None,
        };
        let input = Net::input_of(arch, self.base);
        let mut net = match Net::new(arch, input, self.classes.len(), s.seed) {
            Ok(n) => n,
            Err(e) => {
                entry.status = Status::Invalid(e.to_string());
                self.record(&entry, on)?;
                return Ok(Some((entry, Vec::new())));
            }
        };
        self.cache(input)?;
        let data = self
            .data
            .get_mut(&(input.h, input.w, input.c))
            .expect("loaded above");
        let (train, val, test, calib) = (
            &self.split.train,
            &self.split.val,
            &self.split.test,
            &self.calib,
        );
        on(Event::Training {
            arch: &name,
            final_run,
        });
        let opts = if final_run {
            final_recipe(epochs, s.seed)
        } else {
            proxy_recipe(epochs, s.seed)
        };
        let stop = self.stop;
        // A final training that never beat guessing (a tiny network on a tiny data set: the
        // final recipe's rate is too low for a handful of steps to move it) is done again from
        // the same start at the rate of the earlier recipe, FINAL_RETRY_LR.
        let chance = 1.0 / self.classes.len().max(1) as f32 + 0.01;
        let rates: &[f32] = if final_run {
            &[opts.lr, FINAL_RETRY_LR]
        } else {
            &[opts.lr]
        };
        let (mut history, mut best) = (Vec::new(), None);
        for (i, &lr) in rates.iter().enumerate() {
            if i > 0 {
                net = Net::new(arch, input, self.classes.len(), s.seed)
                    .map_err(|e| TrainError::ArchSpec(e.to_string()))?;
            }
            let o = Options { lr, ..opts };
            (history, best) = fit_until(
                &mut net,
                data,
                train,
                val,
                &o,
                |p| on(Event::Progress(p)),
                stop,
            )
            .map_err(TrainError::from)?;
            let learnt = history.iter().any(|e| e.val_accuracy > chance);
            if learnt || history.len() < epochs {
                break;
            }
        }
        let Some(mut best) = best.filter(|_| history.len() == epochs) else {
            return Ok(None); // stopped: nothing is journaled
        };
        entry.float_val = history.iter().map(|e| e.val_accuracy).reduce(f32::max);
        if kind == EntryKind::Screen {
            entry.status = Status::Screened;
            entry.params = Some(net.param_count());
            entry.seconds = start.elapsed().as_secs_f64();
            self.record(&entry, on)?;
            return Ok(Some((entry, Vec::new())));
        }
        let ptq = export(&mut best, data, calib, self.classes.clone())?;
        let (model, int8_val) = if final_run {
            // The winner gets the quantisation-aware fine-tune when it needs one.
            let qopts = Options {
                epochs: 2,
                lr: opts.lr * 0.1,
                schedule: Schedule::Cosine,
                ..opts
            };
            let q = tinynas_train::qat::quantise(
                &mut best,
                data,
                (train, val),
                calib,
                ptq,
                entry.float_val.unwrap_or(0.0),
                s.qat,
                &qopts,
                stop,
                |e| {
                    if let tinynas_train::qat::Quantising::Progress(p) = e {
                        on(Event::Progress(p))
                    }
                },
            )?;
            if stop.load(Ordering::Relaxed) {
                // Stopped before or during the fine-tune: journaling this model would make a
                // resumed search end differently from an uninterrupted one.
                return Ok(None);
            }
            entry.int8_test = Some(int8_accuracy(&q.model, data, test)?);
            (q.model, q.int8_val)
        } else {
            let v = int8_accuracy(&ptq, data, val)?;
            (ptq, v)
        };
        entry.int8_val = Some(int8_val);
        // The float networks (weights, gradients, each layer's last activations) and the training
        // engine's spare buffers are not needed to measure: freed, and handed back to the system,
        // before the firmware build, which on a small gateway needs the room.
        drop(best);
        drop(net);
        tinynas_train::tensor::release_pool();
        crate::host_memory::release_freed();
        let plan = tinynas_model::plan::plan(&model);
        let param_bytes = model.param_bytes();
        entry.params = Some(model.params());
        entry.macs = Some(model.macs());
        entry.arena_bytes = Some(plan.arena_bytes);
        let bytes = tinynas_model::format::to_bytes(&model);
        entry.model_crc = Some(crc32fast::hash(&bytes));
        let b = &s.budgets;
        if plan.arena_bytes as u64 > b.ram_bytes || param_bytes as u64 > b.flash_bytes {
            entry.status = Status::OverBudgetAnalytic(format!(
                "arena {} bytes (SRAM budget {}), parameters {} bytes (flash budget {})",
                plan.arena_bytes, b.ram_bytes, param_bytes, b.flash_bytes
            ));
        } else {
            on(Event::Measuring { arch: &name });
            let (sram, flash, latency) = self.needs_of(&model);
            entry.predicted_latency = latency;
            if self.table.is_some() {
                (entry.predicted_sram_bytes, entry.predicted_flash_bytes) =
                    (Some(sram), Some(flash));
            }
            let opts = crate::bench::Options {
                inputs: 2,
                seed: s.seed,
                per_layer: self.table.is_some(),
                trace: false,
                ..Default::default()
            };
            let o = match self.run_on_board(&bytes, &name, &opts)? {
                OnBoard::Stopped => return Ok(None), // nothing is journaled
                // A candidate too big or too slow for the board is over budget, journaled with
                // the reason; the search goes on.
                OnBoard::Unmeasurable(why) => {
                    entry.status = Status::OverBudgetMeasured(format!("not measurable: {why}"));
                    None
                }
                OnBoard::Measured(o) => Some(o),
            };
            if let Some(o) = o {
                let m = &o.measurement;
                let input_bytes: u64 = o.inputs.iter().map(|i| i.len() as u64).sum();
                let measured = Measured {
                    board: m.board.clone(),
                    latency: m.latency.iter().copied().max().unwrap_or(0),
                    unit: m.unit.name().to_string(),
                    peak_sram_bytes: m.peak_sram_bytes(),
                    flash_bytes: m.sizes.flash().saturating_sub(input_bytes),
                    outputs_match_host: true,
                };
                if self.table.is_some() {
                    let rows = predict::Table::rows_of(&model, &m.per_step)?;
                    let sizes =
                        self.sizes_of_model(&model, measured.flash_bytes, measured.peak_sram_bytes);
                    self.learn(&rows, sizes);
                    entry.layers = Some(rows);
                }
                if let Some(p) = entry.predicted_latency {
                    self.predictions.push((name.clone(), p, measured.latency));
                }
                if let Some(why) = over_budget(s, &measured) {
                    entry.status = Status::OverBudgetMeasured(why);
                }
                entry.measured = Some(measured);
            }
        }
        entry.seconds = start.elapsed().as_secs_f64();
        if final_run {
            crate::fsutil::write_atomic(&self.dir.join(final_file(&name)), &bytes)
                .map_err(self.jerr())?;
        }
        self.record(&entry, on)?;
        Ok(Some((entry, bytes)))
    }

    /// Builds and runs a model's bench firmware on the board; its outputs must equal the host's.
    /// A failure while the search is being stopped is the interruption: Ctrl-C in a terminal
    /// reaches cargo, rustc and QEMU too, and the handler may set the flag a moment after the
    /// children died. A firmware too big or too slow for the board is unmeasurable, with the
    /// reason; any other failure is an error.
    pub(super) fn run_on_board(
        &mut self,
        bytes: &[u8],
        name: &str,
        opts: &crate::bench::Options,
    ) -> Result<OnBoard, SearchError> {
        // Built as the firmware is: with its opt-level and debug info.
        let opts = crate::bench::Options {
            profile: self.s.profile,
            ..opts.clone()
        };
        match crate::bench::run(bytes, self.board, &opts, &self.s.firmware_cache, |_| {}) {
            Ok(o) if !o.outputs_match() => Err(SearchError::Mismatch {
                arch: name.to_string(),
            }),
            Ok(o) => Ok(OnBoard::Measured(Box::new(o))),
            Err(source) => {
                std::thread::sleep(std::time::Duration::from_millis(200));
                if self.stop.load(Ordering::Relaxed) {
                    return Ok(OnBoard::Stopped);
                }
                match source.unmeasurable() {
                    Some(why) => Ok(OnBoard::Unmeasurable(why)),
                    None => Err(SearchError::Bench {
                        arch: name.to_string(),
                        source: Box::new(source),
                    }),
                }
            }
        }
    }

    /// Adds measured rows and the firmware's sizes to the table and to the board's table in the
    /// cache (shared by later searches; a failed write costs only predictions).
    pub(super) fn learn(&mut self, rows: &[predict::Row], sizes: Option<predict::Sizes>) {
        if let Some(t) = self.table.as_mut() {
            t.extend(rows);
            if let Some(z) = &sizes {
                t.add_sizes(z.clone());
            }
            let _ = predict::Table::merge_into_cache(
                &self.s.firmware_cache,
                &t.board,
                self.s.profile,
                rows,
                sizes.as_ref(),
            );
        }
    }

    /// The sizes of an architecture's measured firmware, for the table: its parameter bytes,
    /// arena and kernel families from its untrained model (the trained one has the same), so a
    /// resumed search, which has only the journal, adds the same.
    pub(super) fn sizes_of(
        &self,
        arch: Arch,
        flash_bytes: u64,
        peak_sram_bytes: u64,
    ) -> Option<predict::Sizes> {
        self.sizes_of_model(&self.shape_model(arch)?, flash_bytes, peak_sram_bytes)
    }

    /// [`Self::sizes_of`] a model already built (trained or not: the same sizes).
    pub(super) fn sizes_of_model(
        &self,
        model: &tinynas_model::Model,
        flash_bytes: u64,
        peak_sram_bytes: u64,
    ) -> Option<predict::Sizes> {
        Some(predict::Sizes {
            families: predict::families(model).ok()?,
            param_bytes: model.param_bytes() as u64,
            arena_bytes: tinynas_model::plan::plan(model).arena_bytes as u64,
            flash_bytes,
            peak_sram_bytes,
        })
    }

    /// Journals a new entry, then reports it.
    fn record(&mut self, entry: &Entry, on: &mut dyn FnMut(Event<'_>)) -> Result<(), SearchError> {
        self.journal.append(entry).map_err(self.jerr())?;
        on(Event::Evaluated {
            entry,
            resumed: false,
        });
        Ok(())
    }
}

/// What a run on the board gave ([`Searcher::run_on_board`]).
pub(super) enum OnBoard {
    Measured(Box<crate::bench::Outcome>),
    Unmeasurable(String),
    Stopped,
}

/// What a measurement exceeds, as one line (`None` when it fits).
fn over_budget(s: &Settings, m: &Measured) -> Option<String> {
    let over = (s.budgets).check(m.peak_sram_bytes, m.flash_bytes, m.latency, &m.unit);
    (!over.is_empty()).then(|| over.join(", "))
}
