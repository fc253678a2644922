"""A ``lax.scan`` whose kernels get their gradients after the backward loop, not inside it.

Differentiating a scan whose body multiplies by a loop-invariant kernel makes the backward loop
accumulate that kernel's gradient step by step: for the RSSM's observe scan (T = 64 steps of
B = 16 rows) each of its seven kernels takes a [16, I]^T x [16, O] product and an add into an
accumulator per step, small matmuls that run far below the machine's rate and were about 40 %
of the backward loop on the 1m preset. Here the body applies each kernel through
``linear(name, x)``; the forward pass records every step's input x, the backward loop computes
only the cotangents of the products (as the cotangent of a zero added to each), and each
kernel's gradient is then one contraction over all T steps at once.

The mathematics are unchanged: the forward values are the plain scan's bit for bit (the added
zeros are exact), and the gradients are the same sums in another order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

LinearFn = Callable[[str, jax.Array], jax.Array]
Step = Callable[[LinearFn, Any, Any, Any, Any], tuple[Any, Any]]


def contract(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """x [..., I] @ kernel [I, O], or grouped x [G, N, I] with kernel [G, I, O] -> [G, N, O]
    (a block-diagonal layer computed group-major). x is cast to the kernel's dtype."""
    x = x.astype(kernel.dtype)
    if kernel.ndim == 2:
        return x @ kernel
    return jnp.einsum("gni,gio->gno", x, kernel)


@jax.custom_vjp
def _product(x: jax.Array, kernel: jax.Array, kernel_t: jax.Array) -> jax.Array:
    """``contract(x, kernel)`` for x in the kernel's dtype, whose input gradient is
    ``contract(grad, kernel_t)`` with the transposed kernel kernel_t, made once before the
    loop: XLA's CPU dot read a kernel transposed at a cost on every call ([16, 512] x
    [512, 192] with the kernel stored [192, 512]: 49 us a step, 34 us laid out for it,
    microbenchmarked in a 64-step scan). No gradient for the kernels (``hoisted_scan`` makes
    theirs)."""
    return contract(x, kernel)


def _product_fwd(x, kernel, kernel_t):
    return contract(x, kernel), kernel_t


def _product_bwd(kernel_t, grad):
    return contract(grad, kernel_t), None, None


_product.defvjp(_product_fwd, _product_bwd)


def plain_linear(kernels: dict[str, jax.Array]) -> LinearFn:
    """``linear`` for calling a step outside ``hoisted_scan`` (same products, no recording)."""
    return lambda name, x: contract(x, kernels[name])


def _kernel_grad(inputs: jax.Array, grads: jax.Array, kernel: jax.Array) -> jax.Array:
    """Sum over steps and rows of input^T grad: inputs [T, ..., I], grads [T, ..., O]."""
    if kernel.ndim == 2:
        rows = inputs.reshape((-1, inputs.shape[-1])), grads.reshape((-1, grads.shape[-1]))
        return (rows[0].T @ rows[1]).astype(kernel.dtype)
    return jnp.einsum("tgni,tgno->gio", inputs, grads).astype(kernel.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 6))
def hoisted_scan(
    step: Step,
    kernels: dict[str, jax.Array],
    params: Any,
    carry: Any,
    xs: Any,
    consts: Any,
    unroll: int = 1,
) -> tuple[Any, Any]:
    """``lax.scan`` of ``step(linear, params, carry, (x, const))`` over the leading axis of xs
    and consts -> (final carry, stacked outputs).

    ``step`` must read the kernels only through ``linear(name, x)`` (``contract`` with
    ``kernels[name]``), each kernel once per step (a second use raises), and everything else
    it differentiates through ``params``, carry and xs; consts (masks, noise) get no
    gradient. The kernels' gradients are computed after the backward loop (module
    docstring); params' (biases, norm scales: small) inside it."""
    return _forward(step, kernels, params, carry, xs, consts, unroll)[0]


def _forward(step, kernels, params, carry, xs, consts, unroll):
    """The scan with a zero added to each product; returns its outputs, its VJP with respect
    to (params, carry, xs, zeros) and every step's kernel inputs {name: [T, ...]}."""
    length = jax.tree.leaves(xs)[0].shape[0]
    first = jax.tree.map(lambda x: x[0], (xs, consts))
    shapes = {}

    def probe(params, carry, inputs):
        def linear(name, x):
            if name in shapes:
                raise ValueError(
                    f"hoisted_scan: kernel {name!r} is applied twice in one step; each kernel "
                    "may be applied once (its gradient is one contraction over the steps' inputs)"
                )
            y = contract(x, kernels[name])
            shapes[name] = jax.ShapeDtypeStruct((length, *y.shape), y.dtype)
            return y

        return step(linear, params, carry, inputs)

    jax.eval_shape(probe, params, carry, first)
    zeros = {name: jnp.zeros(s.shape, s.dtype) for name, s in shapes.items()}
    transposed = {name: jnp.swapaxes(kernel, -1, -2) for name, kernel in kernels.items()}

    def scan(params, carry, xs, zeros):
        def body(carry, inputs):
            x, const, zero = inputs
            seen = {}

            def linear(name, v):
                v = seen[name] = v.astype(kernels[name].dtype)
                return _product(v, kernels[name], transposed[name]) + zero[name]

            carry, out = step(linear, params, carry, (x, const))
            return carry, (out, seen)

        carry, (out, seen) = jax.lax.scan(body, carry, (xs, consts, zeros), unroll=unroll)
        return (carry, out), seen

    return jax.vjp(scan, params, carry, xs, zeros, has_aux=True)


def _hoisted_fwd(step, kernels, params, carry, xs, consts, unroll):
    out, vjp, seen = _forward(step, kernels, params, carry, xs, consts, unroll)
    return out, (vjp, seen, kernels)


def _hoisted_bwd(step, unroll, residuals, grad):
    vjp, seen, kernels = residuals
    grad_params, grad_carry, grad_xs, grad_products = vjp(grad)
    grad_kernels = {
        name: _kernel_grad(seen[name], grad_products[name], kernel)
        for name, kernel in kernels.items()
    }
    return grad_kernels, grad_params, grad_carry, grad_xs, None


hoisted_scan.defvjp(_hoisted_fwd, _hoisted_bwd)
