"""derain: the two-stage recurrent video deraining network of "Frame-Consistent Recurrent Video
Deraining with Dual-Level Flow" (Yang, Liu, Feng, CVPR 2019), its losses and tools.

    model = derain.build_model(size="small")
    out = model(rain)                       # rain (N,T,3,H,W) in [0,1] -> out["B"] (N,T,3,H,W)
    loss, terms = derain.derain_loss(out, batch, derain.LossConfig(), model)
"""

from rainsynth.compat import require

require("torch")
require("safetensors")

from derain.losses import LossConfig, derain_loss, flow_loss_photometric, flow_loss_supervised  # noqa: E402
from derain.model import ModelConfig, State, VideoDerainer, build_flownet, build_model  # noqa: E402
from derain.padding import InputPadder  # noqa: E402
from derain.warp import warp  # noqa: E402

__all__ = [
    "InputPadder",
    "LossConfig",
    "ModelConfig",
    "State",
    "VideoDerainer",
    "build_flownet",
    "build_model",
    "derain_loss",
    "flow_loss_photometric",
    "flow_loss_supervised",
    "warp",
]
