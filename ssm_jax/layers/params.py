"""Parameter kinds shared by every layer.

SSM parameters (A, B, C of the state space model and the step size dt / log_step) are
held as :class:`SSMParam`, a subclass of ``nnx.Param``. The optimizer selects them by
type (``nnx.OfType(SSMParam)``) to give them their own learning rate and no weight
decay, as the S4 and S5 papers do; everything else is an ordinary ``nnx.Param``.
"""
from flax import nnx


class SSMParam(nnx.Param):
    """A parameter of the state space model itself (A, B, C, dt): own LR, no weight decay."""
