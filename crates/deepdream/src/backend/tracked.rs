//! The autodiff side of the CPU kernels' backend extensions, written once: an operation on
//! one tracked input runs its forward pass on the inner backend and, where the input needs a
//! gradient, records a state whose [`InputGradient`] rule gives the input's gradient from
//! the output's. The weights of DeepDream's networks never need one.

use std::fmt::Debug;
use std::marker::PhantomData;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend};

/// What the forward pass keeps for the gradient, and the rule that turns the output's
/// gradient into the input's.
pub(crate) trait InputGradient<B: Backend>: Clone + Send + Debug + 'static {
    /// The input's gradient from the output's.
    fn input_gradient(self, output_grad: B::FloatTensorPrimitive) -> B::FloatTensorPrimitive;
}

/// The backward step of an operation whose state is `S`.
#[derive(Debug)]
struct Rule<S>(PhantomData<S>);

impl<B: Backend, S: InputGradient<B>> Backward<B, 1> for Rule<S> {
    type State = S;

    fn backward(self, ops: Ops<S, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let state = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            state.input_gradient(grad)
        });
    }
}

/// Runs `forward` (output and state from the inner backend's input) under autodiff: the
/// state's rule gives the input's gradient when the input is tracked.
pub(crate) fn unary_op<B: Backend, C: CheckpointStrategy, S: InputGradient<B>>(
    x: FloatTensor<Autodiff<B, C>>,
    forward: impl FnOnce(B::FloatTensorPrimitive) -> (B::FloatTensorPrimitive, S),
) -> FloatTensor<Autodiff<B, C>> {
    let (x, node) = x.into_parts();
    let (output, state) = forward(x);
    match Rule::<S>(PhantomData)
        .prepare::<C>([node])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish(state, output),
        OpsKind::UnTracked(prep) => prep.finish(output),
    }
}
