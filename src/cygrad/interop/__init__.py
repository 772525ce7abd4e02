"""Adapters that put cygrad's kernels inside other autodiff engines.

- `cygrad.interop.torch`: `torch.autograd.Function`s (`LinearFunction`, `SigmoidFunction`),
  drop-in modules (`Linear`, `Sigmoid`) and `cygradify(module)`, which swaps them into an
  existing `torch.nn.Module` (install with `pip install "cygrad[torch]"`).
- `cygrad.interop.autograd`: HIPS autograd primitives `linear(x, w, b)` and `sigmoid(x)`
  (install with `pip install "cygrad[autograd]"`).

Each adapter imports its engine when it is imported itself, never before: `import cygrad`
and `import cygrad.interop` load neither PyTorch nor autograd.
"""
