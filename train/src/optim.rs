//! Optimisers (Adam, SGD with momentum) and learning-rate schedules, as `--optimizer` and
//! `--schedule` name them.

use super::layers::Param;

/// Which optimiser, as `--optimizer` names it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptimizerKind {
    Adam,
    /// Stochastic gradient descent with (heavy-ball) momentum.
    Sgd {
        momentum: f32,
    },
}

/// How the learning rate changes over training, as `--schedule` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    Constant,
    /// Half a cosine from the base rate down to zero over all steps.
    Cosine,
    /// A tenth of the rate from half way, a hundredth from three quarters.
    Step,
}

impl Schedule {
    /// The learning-rate factor at `progress` in `[0, 1)` of the training.
    pub fn factor(self, progress: f64) -> f32 {
        let p = progress.clamp(0.0, 1.0);
        match self {
            Schedule::Constant => 1.0,
            Schedule::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * p).cos())) as f32,
            Schedule::Step if p >= 0.75 => 0.01,
            Schedule::Step if p >= 0.5 => 0.1,
            Schedule::Step => 1.0,
        }
    }
}

impl std::str::FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "constant" => Ok(Schedule::Constant),
            "cosine" => Ok(Schedule::Cosine),
            "step" => Ok(Schedule::Step),
            _ => Err(format!(
                "unknown schedule {s:?}: choose constant, cosine or step"
            )),
        }
    }
}

/// An optimiser of either kind, with a learning rate the schedule sets before each step.
#[derive(Debug, Clone)]
pub enum Optimizer {
    Adam(Adam),
    Sgd(Sgd),
}

impl Optimizer {
    pub fn new(kind: OptimizerKind, lr: f32) -> Self {
        match kind {
            OptimizerKind::Adam => Optimizer::Adam(Adam::new(lr)),
            OptimizerKind::Sgd { momentum } => Optimizer::Sgd(Sgd::new(lr, momentum)),
        }
    }

    pub fn set_lr(&mut self, lr: f32) {
        match self {
            Optimizer::Adam(a) => a.lr = lr,
            Optimizer::Sgd(s) => s.lr = lr,
        }
    }

    /// Applies and clears the accumulated gradients.
    pub fn step(&mut self, params: Vec<&mut Param>) {
        match self {
            Optimizer::Adam(a) => a.step(params),
            Optimizer::Sgd(s) => s.step(params),
        }
    }
}

/// SGD with momentum: `v = momentum * v + g; w -= lr * v`.
#[derive(Debug, Clone)]
pub struct Sgd {
    pub lr: f32,
    pub momentum: f32,
    velocity: Vec<Vec<f32>>,
}

impl Sgd {
    pub fn new(lr: f32, momentum: f32) -> Self {
        Sgd {
            lr,
            momentum,
            velocity: Vec::new(),
        }
    }

    /// Applies and clears the accumulated gradients.
    pub fn step(&mut self, params: Vec<&mut Param>) {
        if self.velocity.len() != params.len() {
            self.velocity = params.iter().map(|p| vec![0.0; p.value.len()]).collect();
        }
        for (p, v) in params.into_iter().zip(&mut self.velocity) {
            for ((w, g), v) in p.value.iter_mut().zip(&mut p.grad).zip(v.iter_mut()) {
                *v = self.momentum * *v + *g;
                *w -= self.lr * *v;
                *g = 0.0;
            }
        }
    }
}

/// Adam (Kingma & Ba), with bias correction.
#[derive(Debug, Clone)]
pub struct Adam {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    t: i32,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl Adam {
    pub fn new(lr: f32) -> Self {
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-7,
            t: 0,
            m: Vec::new(),
            v: Vec::new(),
        }
    }

    /// Applies and clears the accumulated gradients.
    pub fn step(&mut self, params: Vec<&mut Param>) {
        if self.m.len() != params.len() {
            self.m = params.iter().map(|p| vec![0.0; p.value.len()]).collect();
            self.v = self.m.clone();
        }
        self.t += 1;
        let c1 = 1.0 - self.beta1.powi(self.t);
        let c2 = 1.0 - self.beta2.powi(self.t);
        for ((p, m), v) in params.into_iter().zip(&mut self.m).zip(&mut self.v) {
            for i in 0..p.value.len() {
                let g = p.grad[i];
                m[i] = self.beta1 * m[i] + (1.0 - self.beta1) * g;
                v[i] = self.beta2 * v[i] + (1.0 - self.beta2) * g * g;
                p.value[i] -= self.lr * (m[i] / c1) / ((v[i] / c2).sqrt() + self.eps);
                p.grad[i] = 0.0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Minimises `sum((w - 3)^2)` with both optimisers.
    #[test]
    fn optimisers_descend() {
        for kind in [OptimizerKind::Adam, OptimizerKind::Sgd { momentum: 0.9 }] {
            let mut p = Param::new(vec![0.0, 10.0, -4.0]);
            let mut opt = Optimizer::new(kind, 0.05);
            for _ in 0..400 {
                for (g, w) in p.grad.iter_mut().zip(&p.value) {
                    *g = 2.0 * (w - 3.0);
                }
                opt.step(vec![&mut p]);
            }
            assert!(
                p.value.iter().all(|w| (w - 3.0).abs() < 0.05),
                "{kind:?}: {:?}",
                p.value
            );
            assert!(p.grad.iter().all(|&g| g == 0.0), "gradients are cleared");
        }
    }

    #[test]
    fn schedules() {
        assert_eq!(Schedule::Constant.factor(0.9), 1.0);
        assert_eq!(Schedule::Cosine.factor(0.0), 1.0);
        assert!((Schedule::Cosine.factor(0.5) - 0.5).abs() < 1e-6);
        assert!(Schedule::Cosine.factor(0.999) < 1e-4);
        assert_eq!(Schedule::Step.factor(0.49), 1.0);
        assert_eq!(Schedule::Step.factor(0.5), 0.1);
        assert_eq!(Schedule::Step.factor(0.8), 0.01);
        assert!("linear".parse::<Schedule>().unwrap_err().contains("cosine"));
    }
}
