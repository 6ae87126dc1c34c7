"""A new selective SSM in one file: Mamba with a log-bounded step size delta.

Registered as ``"bounded_delta"``. Train it on the quickstart task with

    python -m experiments.train --config=configs/quickstart.py --workdir=/tmp/bounded \
        --config.import_modules="('examples/selective_new_delta.py',)" \
        --config.model.layer=bounded_delta --config.model.activation=none

What is new, against the built-in Mamba (``ssm_jax.layers.mamba_ssm``): the rule for delta.
Mamba uses delta = softplus(dt_in W_dt + bias), unbounded above (a large delta resets the
state) and able to collapse towards 0. Here the step lives on a log scale between two
bounds,

    z     = dt_in W_dt + dt_bias                 dt_in = (u W_x)[:R], low rank R, as Mamba
    delta = DELTA_MIN (DELTA_MAX / DELTA_MIN)^sigmoid(z)

so log delta is a sigmoid of the input: every channel keeps a step in
[DELTA_MIN, DELTA_MAX] whatever the input, and a unit change of z moves delta by the same
factor at every scale (the log-uniform geometry of S4's and Mamba's dt init). dt_bias is
initialized so that delta starts log-uniform in [DT_MIN, DT_MAX], Mamba's init range.

Everything else is Mamba's: A = -exp(A_log) with the S4D-Real init A_log[d, n] = log(n + 1),
B and C from the same input projection u W_x, and ZOH (A_bar = exp(delta A),
Bu_bar = delta B u).

Which scan it takes: ``discretize="zoh"``, so the layer calls
``ssm_jax.ops.selective_scan`` with our delta (``delta_softplus=False``: delta is final
when ``select`` returns it), and that is the fused Pallas kernel on a GPU (forward and
backward), the XLA scan on a CPU. A callable ``discretize`` would take the generic
``ssm_jax.scan.linear_scan`` path instead.

The library gives the Mamba block around it (input projection, causal depthwise
convolution, gate, output projection), the recurrent ``step`` and jit/grad/vmap.
Parameter kinds: ``x_proj`` and ``dt_proj`` are ordinary weights (``weight_keys``:
the main learning rate and weight decay); ``A_log`` and ``dt_bias`` set the time scales,
so they are SSM parameters (their own learning rate, no weight decay).
"""
import math

import jax
import jax.numpy as jnp

from ssm_jax.layers import SelectiveSSM, register

DELTA_MIN, DELTA_MAX = 1e-4, 1.0    # hard bounds of delta
DT_MIN, DT_MAX = 1e-3, 1e-1         # delta's range at init (log-uniform per channel)
LOG_MIN, LOG_RANGE = math.log(DELTA_MIN), math.log(DELTA_MAX / DELTA_MIN)


def init(key, D, N):
    """Parameters for D channels (the block's expanded width) and state size N."""
    R = max(1, math.ceil(D / 32))           # Mamba's dt_rank = ceil(d_model / 16), with D = 2 d_model
    k_x, k_dt, k_b = jax.random.split(key, 3)
    dt = jnp.exp(jax.random.uniform(k_b, (D,), minval=math.log(DT_MIN), maxval=math.log(DT_MAX)))
    s = (jnp.log(dt) - LOG_MIN) / LOG_RANGE  # sigmoid(dt_bias) = s gives delta = dt at z = dt_bias
    return {
        "A_log": jnp.log(jnp.broadcast_to(jnp.arange(1.0, N + 1), (D, N))),          # S4D-Real
        "x_proj": jax.random.uniform(k_x, (D, R + 2 * N), minval=-D ** -0.5, maxval=D ** -0.5),
        "dt_proj": jax.random.uniform(k_dt, (R, D), minval=-R ** -0.5, maxval=R ** -0.5),
        "dt_bias": jnp.log(s) - jnp.log1p(-s),                                       # logit(s)
    }


def select(p, u):
    """u (b, L, D) -> delta (b, L, D), B (b, L, N), C (b, L, N)."""
    R, N = p["dt_proj"].shape[0], p["A_log"].shape[1]
    dt_in, B, C = jnp.split(u @ p["x_proj"], [R, R + N], axis=-1)
    z = dt_in @ p["dt_proj"] + p["dt_bias"]
    delta = jnp.exp(LOG_MIN + LOG_RANGE * jax.nn.sigmoid(z))   # in [DELTA_MIN, DELTA_MAX]
    return delta, B, C


BOUNDED_DELTA = SelectiveSSM(
    init=init,
    A=lambda p: -jnp.exp(p["A_log"]),       # (D, N), negative
    select=select,
    discretize="zoh",                       # Mamba's ZOH: the fused selective_scan kernel on GPU
    delta_softplus=False,                   # our delta is final; no softplus on top
    A_keys=("A_log",),                      # what trainable_A=False freezes
    weight_keys=("x_proj", "dt_proj"),      # ordinary weights; the rest are SSM parameters
)

register("bounded_delta", BOUNDED_DELTA)
