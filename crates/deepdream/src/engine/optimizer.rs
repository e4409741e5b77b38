//! Optimisers that minimise an objective over a flat vector of parameters, given a function
//! that returns the objective's value and gradient at a point: L-BFGS (the default of style
//! transfer, as in Gatys et al. and jcjohnson/neural-style) and Adam (feature visualisation).
//!
//! The L-BFGS iteration is PyTorch's `torch.optim.LBFGS` with `line_search_fn="strong_wolfe"`
//! (the first step scaled by `1 / |g|₁`, the two-loop recursion over the last `history`
//! pairs, the strong-Wolfe search by cubic interpolation, the same stopping tests), so that
//! a PyTorch script with the same settings follows the same path up to rounding. Without a
//! line search, L-BFGS overshoots on the quartic Gram-matrix objectives of style transfer.

use crate::error::{Error, Result};

/// An optimiser and its settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// Limited-memory BFGS, keeping the last `history` steps.
    Lbfgs {
        /// Steps kept for the curvature estimate.
        history: usize,
    },
    /// Adam (Kingma & Ba), β₁ 0.9, β₂ 0.999, ε 1e-8.
    Adam {
        /// Step size.
        learning_rate: f32,
    },
}

impl Optimizer {
    /// L-BFGS keeping 10 steps (PyTorch's default is 100; each step kept costs two
    /// image-sized vectors).
    pub const LBFGS: Optimizer = Optimizer::Lbfgs { history: 10 };

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        match *self {
            Optimizer::Lbfgs { history: 0 } => Err(Error::InvalidParameter(
                "the L-BFGS history must be at least 1".into(),
            )),
            Optimizer::Adam { learning_rate }
                if !(learning_rate.is_finite() && learning_rate > 0.0) =>
            {
                Err(Error::InvalidParameter(format!(
                    "the learning rate must be a positive number (got {learning_rate})"
                )))
            }
            _ => Ok(()),
        }
    }

    /// Minimises from `x` with at most `evaluations` calls of `f`, which returns the value
    /// and the gradient at a point. Returns the last point reached.
    pub fn minimize(
        &self,
        x: Vec<f32>,
        evaluations: usize,
        f: impl FnMut(&[f32]) -> Result<(f32, Vec<f32>)>,
    ) -> Result<Vec<f32>> {
        self.validate()?;
        match *self {
            Optimizer::Lbfgs { history } => lbfgs(x, evaluations, history, f),
            Optimizer::Adam { learning_rate } => adam(x, evaluations, learning_rate, f),
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum::<f64>() as f32
}

/// `y += alpha · x`.
fn add_scaled(y: &mut [f32], alpha: f32, x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += alpha * x;
    }
}

fn largest_abs(v: &[f32]) -> f32 {
    v.iter().fold(0.0f32, |m, x| m.max(x.abs()))
}

fn check_gradient(gradient: &[f32], x: &[f32], value: f32) -> Result<()> {
    if gradient.len() != x.len() {
        return Err(Error::InvalidParameter(format!(
            "the gradient has {} values for {} parameters",
            gradient.len(),
            x.len()
        )));
    }
    if !value.is_finite() || gradient.iter().any(|g| !g.is_finite()) {
        return Err(Error::InvalidParameter(
            "the objective or its gradient is not a finite number (lower the weights or the learning rate)".into(),
        ));
    }
    Ok(())
}

/// PyTorch's L-BFGS step loop with its strong-Wolfe line search (see the module
/// documentation), stopping after `evaluations` evaluations of `f`.
fn lbfgs(
    mut x: Vec<f32>,
    evaluations: usize,
    history: usize,
    mut f: impl FnMut(&[f32]) -> Result<(f32, Vec<f32>)>,
) -> Result<Vec<f32>> {
    if evaluations == 0 {
        return Ok(x);
    }
    let mut evaluate = |x: &[f32]| -> Result<(f32, Vec<f32>)> {
        let (value, gradient) = f(x)?;
        check_gradient(&gradient, x, value)?;
        Ok((value, gradient))
    };
    let (mut loss, mut gradient) = evaluate(&x)?;
    let mut used = 1;
    if largest_abs(&gradient) <= TOLERANCE_GRAD {
        return Ok(x);
    }
    // Past steps s and gradient changes y, with 1 / (y·s).
    let mut steps: Vec<Vec<f32>> = Vec::new();
    let mut changes: Vec<Vec<f32>> = Vec::new();
    let mut inverse_ys: Vec<f32> = Vec::new();
    let mut direction: Vec<f32> = gradient.iter().map(|g| -g).collect();
    let mut step_length = 1.0f32;
    // The initial inverse Hessian's scale, y·s / y·y of the latest pair.
    let mut scale = 1.0f32;
    let mut previous_gradient: Vec<f32> = Vec::new();
    for iteration in 1.. {
        if iteration > 1 {
            let y: Vec<f32> = gradient
                .iter()
                .zip(&previous_gradient)
                .map(|(g, p)| g - p)
                .collect();
            let s: Vec<f32> = direction.iter().map(|d| d * step_length).collect();
            let ys = dot(&y, &s);
            if ys > 1e-10 {
                if steps.len() == history {
                    steps.remove(0);
                    changes.remove(0);
                    inverse_ys.remove(0);
                }
                scale = ys / dot(&y, &y);
                steps.push(s);
                changes.push(y);
                inverse_ys.push(1.0 / ys);
            }
            direction = two_loop(&gradient, &steps, &changes, &inverse_ys, scale);
        }
        previous_gradient.clone_from(&gradient);
        let previous_loss = loss;
        step_length = if iteration == 1 {
            let l1: f32 = gradient.iter().map(|g| g.abs()).sum();
            (1.0 / l1).min(1.0)
        } else {
            1.0
        };
        let slope = dot(&gradient, &direction);
        if slope > -TOLERANCE_CHANGE {
            break;
        }
        let search = LineSearch {
            x: &x,
            direction: &direction,
            loss,
            gradient: &gradient,
            slope,
            most_evaluations: evaluations - used,
        };
        let found = search.run(step_length, &mut evaluate)?;
        used += found.evaluations;
        step_length = found.step;
        (loss, gradient) = (found.loss, found.gradient);
        add_scaled(&mut x, step_length, &direction);
        if used >= evaluations
            || largest_abs(&gradient) <= TOLERANCE_GRAD
            || largest_abs(&direction) * step_length <= TOLERANCE_CHANGE
            || (loss - previous_loss).abs() < TOLERANCE_CHANGE
        {
            break;
        }
    }
    Ok(x)
}

const TOLERANCE_GRAD: f32 = 1e-7;
const TOLERANCE_CHANGE: f32 = 1e-9;

/// A search along `direction` from `x` for a step meeting the strong Wolfe conditions
/// (sufficient decrease, c₁ = 1e-4; curvature, c₂ = 0.9): PyTorch's `_strong_wolfe`, a
/// bracketing phase then a zoom by cubic interpolation, at most 25 evaluations (fewer when
/// the budget of the whole minimisation runs out).
struct LineSearch<'a> {
    x: &'a [f32],
    direction: &'a [f32],
    loss: f32,
    gradient: &'a [f32],
    slope: f32,
    most_evaluations: usize,
}

/// A point the line search tried: step, value, gradient and slope along the direction.
#[derive(Clone)]
struct Trial {
    step: f32,
    loss: f32,
    gradient: Vec<f32>,
    slope: f32,
}

/// What the line search found, and how many evaluations it used.
struct Found {
    step: f32,
    loss: f32,
    gradient: Vec<f32>,
    evaluations: usize,
}

impl LineSearch<'_> {
    fn run(
        &self,
        first_step: f32,
        evaluate: &mut impl FnMut(&[f32]) -> Result<(f32, Vec<f32>)>,
    ) -> Result<Found> {
        const C1: f32 = 1e-4;
        const C2: f32 = 0.9;
        let most = self.most_evaluations.clamp(1, 25);
        let direction_size = largest_abs(self.direction);
        let mut evaluations = 0;
        let mut trial = |step: f32| -> Result<Trial> {
            let mut point = self.x.to_vec();
            add_scaled(&mut point, step, self.direction);
            let (loss, gradient) = evaluate(&point)?;
            evaluations += 1;
            let slope = dot(&gradient, self.direction);
            Ok(Trial {
                step,
                loss,
                gradient,
                slope,
            })
        };
        let start = Trial {
            step: 0.0,
            loss: self.loss,
            gradient: self.gradient.to_vec(),
            slope: self.slope,
        };
        let sufficient = |t: &Trial| t.loss <= self.loss + C1 * t.step * self.slope;
        let curved = |t: &Trial| t.slope.abs() <= -C2 * self.slope;

        // Bracketing: grow the step until an interval holds an acceptable one.
        let mut previous = start.clone();
        let mut current = trial(first_step)?;
        let mut searches = 0;
        let mut bracket: Vec<Trial>;
        let mut done = false;
        loop {
            if !sufficient(&current) || (searches > 1 && current.loss >= previous.loss) {
                bracket = vec![previous, current];
                break;
            }
            if curved(&current) {
                bracket = vec![current];
                done = true;
                break;
            }
            if current.slope >= 0.0 {
                bracket = vec![previous, current];
                break;
            }
            if searches + 1 >= most {
                bracket = vec![start.clone(), current];
                searches += 1;
                break;
            }
            let low = current.step + 0.01 * (current.step - previous.step);
            let high = current.step * 10.0;
            let next = cubic_minimum(&previous, &current, Some((low, high)));
            previous = current;
            current = trial(next)?;
            searches += 1;
        }

        // Zoom: shrink the bracket around the acceptable step.
        let mut insufficient_progress = false;
        let (mut low, mut high) = if bracket.len() == 2 && bracket[1].loss < bracket[0].loss {
            (1, 0)
        } else {
            (0, 1)
        };
        while !done && searches < most && bracket.len() == 2 {
            let (a, b) = (bracket[0].step, bracket[1].step);
            if (b - a).abs() * direction_size < TOLERANCE_CHANGE {
                break;
            }
            let mut step = cubic_minimum(&bracket[0], &bracket[1], None);
            let (min, max) = (a.min(b), a.max(b));
            let margin = 0.1 * (max - min);
            if (max - step).min(step - min) < margin {
                if insufficient_progress || step >= max || step <= min {
                    step = if (step - max).abs() < (step - min).abs() {
                        max - margin
                    } else {
                        min + margin
                    };
                    insufficient_progress = false;
                } else {
                    insufficient_progress = true;
                }
            } else {
                insufficient_progress = false;
            }
            let new = trial(step)?;
            searches += 1;
            if !sufficient(&new) || new.loss >= bracket[low].loss {
                bracket[high] = new;
                (low, high) = if bracket[0].loss <= bracket[1].loss {
                    (0, 1)
                } else {
                    (1, 0)
                };
            } else {
                if curved(&new) {
                    done = true;
                } else if new.slope * (bracket[high].step - bracket[low].step) >= 0.0 {
                    bracket[high] = bracket[low].clone();
                }
                bracket[low] = new;
            }
        }
        let best = bracket.swap_remove(if bracket.len() == 2 { low } else { 0 });
        Ok(Found {
            step: best.step,
            loss: best.loss,
            gradient: best.gradient,
            evaluations,
        })
    }
}

/// The minimum of the cubic through two trials (values and slopes), kept within `bounds`
/// (the trials' interval when `None`); the middle when the cubic has none.
fn cubic_minimum(a: &Trial, b: &Trial, bounds: Option<(f32, f32)>) -> f32 {
    let (x1, f1, g1) = (a.step as f64, a.loss as f64, a.slope as f64);
    let (x2, f2, g2) = (b.step as f64, b.loss as f64, b.slope as f64);
    let (low, high) = match bounds {
        Some((low, high)) => (low as f64, high as f64),
        None => (x1.min(x2), x1.max(x2)),
    };
    let d1 = g1 + g2 - 3.0 * (f1 - f2) / (x1 - x2);
    let d2_square = d1 * d1 - g1 * g2;
    if d2_square >= 0.0 {
        let d2 = d2_square.sqrt();
        let position = if x1 <= x2 {
            x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2.0 * d2))
        } else {
            x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2.0 * d2))
        };
        position.max(low).min(high) as f32
    } else {
        ((low + high) / 2.0) as f32
    }
}

/// The L-BFGS direction `-H g` by the two-loop recursion, `H₀ = scale · I`.
fn two_loop(
    gradient: &[f32],
    steps: &[Vec<f32>],
    changes: &[Vec<f32>],
    inverse_ys: &[f32],
    scale: f32,
) -> Vec<f32> {
    let mut q: Vec<f32> = gradient.iter().map(|g| -g).collect();
    let mut alphas = vec![0.0f32; steps.len()];
    for i in (0..steps.len()).rev() {
        alphas[i] = dot(&steps[i], &q) * inverse_ys[i];
        add_scaled(&mut q, -alphas[i], &changes[i]);
    }
    for value in &mut q {
        *value *= scale;
    }
    for i in 0..steps.len() {
        let beta = dot(&changes[i], &q) * inverse_ys[i];
        add_scaled(&mut q, alphas[i] - beta, &steps[i]);
    }
    q
}

/// Adam: one step per evaluation.
fn adam(
    mut x: Vec<f32>,
    evaluations: usize,
    learning_rate: f32,
    mut f: impl FnMut(&[f32]) -> Result<(f32, Vec<f32>)>,
) -> Result<Vec<f32>> {
    const BETA1: f32 = 0.9;
    const BETA2: f32 = 0.999;
    const EPSILON: f32 = 1e-8;
    let mut first = vec![0.0f32; x.len()];
    let mut second = vec![0.0f32; x.len()];
    for t in 1..=evaluations {
        let (loss, gradient) = f(&x)?;
        check_gradient(&gradient, &x, loss)?;
        let correction1 = 1.0 - BETA1.powi(t as i32);
        let correction2 = 1.0 - BETA2.powi(t as i32);
        for (((x, m), v), g) in x.iter_mut().zip(&mut first).zip(&mut second).zip(&gradient) {
            *m = BETA1 * *m + (1.0 - BETA1) * g;
            *v = BETA2 * *v + (1.0 - BETA2) * g * g;
            let m_hat = *m / correction1;
            let v_hat = *v / correction2;
            *x -= learning_rate * m_hat / (v_hat.sqrt() + EPSILON);
        }
    }
    Ok(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f(x) = ½ Σ aᵢ (xᵢ - cᵢ)², minimum at c.
    fn quadratic(x: &[f32]) -> Result<(f32, Vec<f32>)> {
        let a = [1.0, 10.0, 100.0, 3.0];
        let c = [1.0, -2.0, 0.5, 4.0];
        let value = (0..4).map(|i| 0.5 * a[i] * (x[i] - c[i]).powi(2)).sum();
        let gradient = (0..4).map(|i| a[i] * (x[i] - c[i])).collect();
        Ok((value, gradient))
    }

    #[test]
    fn lbfgs_and_adam_find_the_minimum_of_a_quadratic() {
        let x = Optimizer::LBFGS
            .minimize(vec![0.0; 4], 50, quadratic)
            .unwrap();
        for (x, c) in x.iter().zip([1.0, -2.0, 0.5, 4.0]) {
            assert!((x - c).abs() < 1e-3, "L-BFGS: {x} instead of {c}");
        }
        let adam = Optimizer::Adam {
            learning_rate: 0.05,
        };
        let x = adam.minimize(vec![0.0; 4], 2000, quadratic).unwrap();
        for (x, c) in x.iter().zip([1.0, -2.0, 0.5, 4.0]) {
            assert!((x - c).abs() < 1e-2, "Adam: {x} instead of {c}");
        }
    }

    #[test]
    fn a_non_finite_gradient_is_an_error() {
        let nan = |_: &[f32]| Ok((f32::NAN, vec![0.0]));
        assert!(Optimizer::LBFGS.minimize(vec![0.0], 5, nan).is_err());
        let adam = Optimizer::Adam { learning_rate: 0.1 };
        assert!(adam.minimize(vec![0.0], 5, nan).is_err());
    }
}
