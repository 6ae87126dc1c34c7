"""A new diagonal SSM in one file: geometric frequencies, theta-method discretization.

Registered as ``"geom_diag"``. Train it on the quickstart task with

    python -m experiments.train --config=configs/quickstart.py --workdir=/tmp/geom \
        --config.import_modules="('examples/diagonal_geometric.py',)" --config.model.layer=geom_diag

What is new, against the built-in S4D (``ssm_jax.layers.s4d_ssm``):

* Initialization of A ("geometric"). S4D-Lin puts the M = N/2 frequencies (imaginary
  parts) on a linear grid, Im A_n = pi n. Here they are spread geometrically,

      A_n = -1/2 + i w_n,    w_n = OMEGA_MIN (OMEGA_MAX / OMEGA_MIN)^(n / (M - 1)),

  so the modes are dense at low frequencies (long time scales) and sparse at high ones,
  as the center frequencies of a wavelet (constant-Q) filter bank. The real part -1/2
  is S4D-Lin's, so only the spacing of the frequencies differs. A is per channel and
  trainable.

* Discretization (the theta method, a one-parameter family of implicit rules)::

      x_k = x_{k-1} + dt (A ((1 - theta) x_{k-1} + theta x_k) + B u_k)
      =>  A_bar = (1 + (1 - theta) dt A) / (1 - theta dt A),
          B_bar = dt B / (1 - theta dt A)

  theta = 0 is forward Euler, 1/2 the bilinear transform (S4's), 1 backward (implicit)
  Euler. For theta >= 1/2 every mode with Re A < 0 is stable (|A_bar| < 1) at any step
  size. THETA = 1 below: backward Euler, which damps the modes whose frequency is high
  for their step (dt |A| >> 1) instead of aliasing them as ZOH does.

The library does the rest: the convolution kernel (Vandermonde, as the discretization is
not ZOH) and FFT convolution for whole sequences, the recurrent ``step``, jit/grad/vmap,
the optimizer groups (every parameter here is an SSM parameter: own learning rate, no
weight decay) and ``trainable_A=False`` (freezes ``A_keys``).
"""
import math

import jax
import jax.numpy as jnp

from ssm_jax.layers import DiagonalSSM, register

OMEGA_MIN, OMEGA_MAX = 1.0, 100.0   # frequency band of the geometric init (rad per unit time)
THETA = 1.0                         # 0: forward Euler, 0.5: bilinear, 1: backward Euler
DT_MIN, DT_MAX = 1e-3, 1e-1         # step sizes dt ~ log-uniform, as S4 and S4D


def init(key, H, N):
    """The parameters of H channels of M = N/2 complex modes (``conj_pairs=True``).

    Returns a dict of arrays; their names are ours to choose, the pieces below read them.
    Complex numbers are stored as real (..., 2) pairs (re, im).
    """
    M = N // 2
    k_C, k_dt = jax.random.split(key)
    omega = jnp.geomspace(OMEGA_MIN, OMEGA_MAX, M)                              # (M,)
    log_dt = jax.random.uniform(k_dt, (H,), minval=math.log(DT_MIN), maxval=math.log(DT_MAX))
    return {
        "log_A_real": jnp.full((H, M), math.log(0.5)),        # Re A = -exp(.) = -1/2, stays < 0
        "A_imag": jnp.broadcast_to(omega, (H, M)),            # Im A = w_n, geometric
        "B": jnp.stack([jnp.ones((H, M)), jnp.zeros((H, M))], axis=-1),        # B = 1
        "C": jax.random.normal(k_C, (H, M, 2)) * 0.5 ** 0.5,  # C ~ CN(0, 1)
        "log_dt": log_dt,                                     # read by the default dt piece
    }


def A(p):
    """Continuous-time diagonal of A, (H, M) complex: -exp(log_A_real) + i A_imag."""
    return jax.lax.complex(-jnp.exp(p["log_A_real"]), p["A_imag"])


def as_complex(pair):
    """(..., 2) real pairs -> complex (...)."""
    return jax.lax.complex(pair[..., 0], pair[..., 1])


def theta_method(A, B, dt):
    """(A, B (H, M), dt (H,)) -> (A_bar, B_bar), (H, M) each: the theta rule above."""
    dtA = dt[:, None] * A                   # one step size per channel
    inv = 1.0 / (1.0 - THETA * dtA)
    return (1.0 + (1.0 - THETA) * dtA) * inv, dt[:, None] * B * inv


GEOM_DIAG = DiagonalSSM(
    init=init,
    A=A,
    B=lambda p: as_complex(p["B"]),
    C=lambda p: as_complex(p["C"]),
    # dt: the default, exp(params["log_dt"])
    discretize=theta_method,
    conj_pairs=True,                        # each complex mode stands for itself and its conjugate
    A_keys=("log_A_real", "A_imag"),        # what trainable_A=False freezes
)

register("geom_diag", GEOM_DIAG)
