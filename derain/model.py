"""The two-stage recurrent deraining network (Sec. 4), its configuration and builders.

Per frame t (``VideoDerainer.step``):

    c_t              = ContextNet(frame_context(whole frame))      the per-frame heads' context
                                                                   (only with frame_context)
    p_t              = row positions in the whole frame            (only with row_position)
    raw^S_t          = SF-DerainNet(O~_t, p_t, c_t)                single-frame layers
    B^S_t            = Eq. 6(O~_t, layers(raw^S_t))
    F_t, B^{M,F}_{t-1}, O~^F_{t-1} = MF-AlignNet(B^M_{t-1}, B^S_t, O~_{t-1})
    delta_t, (h, c)  = MF-DerainNet(B^S_t, B^{M,F}_{t-1}, raw^S_t, O~_t, O~^F_{t-1}, p_t, c_t, (h, c))
    raw^M_t          = raw^S_t + delta_t                           v^M = v^S + delta
    B^M_t            = Eq. 6(O~_t, layers(raw^M_t))                the output

With rain_gate (not in the paper, derain.gate), both clean estimates become O~_t + g_t (B_t - O~_t),
with g_t in [0, 1] from RainGate(O~_t, c_t): 0 gives a rain-free frame back exactly.

At t = 0 the "previous" frame is the current one (B^S_0, O~_0) and the flow is zero. The whole
frame of c_t and p_t is O~_t itself unless O~_t is a crop or tile of a larger frame
(derain.context).
Ablations (Table 4): v1 no SF-DerainNet (raw^S is a fixed prior veil and B^S_t = O~_t), v2 no
ConvLSTM, v3 no inverse recovery (B predicted directly), v4 no MF-AlignNet (previous frames
unwarped), v5 the full model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from derain.context import CONTEXT_SIZE, ContextNet, frame_context, row_positions
from derain.convlstm import LSTMState
from derain.flownet import PyramidFlowNet
from derain.gate import RainGate, gated
from derain.heads import layers_from_raw, prior_raw, streak_bound
from derain.mf_alignnet import MFAlignNet
from derain.mf_derainnet import MFDerainNet
from derain.recovery import InverseRecovery
from derain.section import Section
from derain.sf_derainnet import SFDerainNet

MAX_BASE_CHANNELS = 256
"""Largest base_channels a config (or a weights file) may ask for: 4x the paper's 64."""
# Per size: default base channels, channel multipliers and residual blocks per U-Net scale
# (full resolution first), and the flow net's pyramid levels, hidden channels and kernel.
SIZES: dict[str, dict] = {
    "small": dict(
        base=16, mults=(1, 2, 4), n_res=(0, 1, 1),
        flow_levels=4, flow_channels=(16, 32, 16), flow_kernel=5,
    ),
    "paper": dict(
        base=64, mults=(1, 2, 4, 4), n_res=(2, 2, 2, 2),
        flow_levels=5, flow_channels=(32, 64, 32, 16), flow_kernel=7,
    ),
}  # fmt: skip
ABLATIONS: dict[str, dict[str, bool]] = {
    "v1": {"use_sf": False},
    "v2": {"use_lstm": False},
    "v3": {"use_recovery": False},
    "v4": {"use_align": False},
    "v5": {},
}
LAYER_NAMES = ("S", "U", "beta", "R", "A")
STREAK_BOUND_WINDOWS = (0, 1, 3, 5)
POSITION_CHANNELS = 1  # with row_position: the row's position in the whole frame


@dataclass(frozen=True)
class ModelConfig(Section):
    """Network size and the ablation switches of Table 4.

    size: "small" (CPU-trainable: 16 base channels, 3 scales) or "paper" (64 base channels, 4 scales).
    base_channels: overrides the size's base channel count (1 to MAX_BASE_CHANNELS).
    use_sf: False = v1, no SF-DerainNet stage (MF-DerainNet corrects the fixed prior veil).
    use_lstm: False = v2, no ConvLSTM memory (MF-DerainNet's per-frame path alone).
    use_recovery: False = v3, no inverse recovery (the network predicts B directly).
    use_align: False = v4, no MF-AlignNet (previous frames unwarped).
    frame_context: the per-frame heads (A, k) also read the whole frame averaged down to 64x64
        (derain.context), which training crops otherwise lack.
    row_position: both stages also read each pixel's row position in the whole frame
        (derain.context.row_positions), which says how far off a view from the ground usually is
        and which training crops otherwise lack.
    additive_rain: the streaks S and the accumulation flow U are >= 0, as rain only adds light
        (Eq. 3), and can be exactly 0 where there is none (derain.heads.layers_from_raw).
    rain_gate: a per-frame gate g in [0, 1] scales both stages' change to the frame (derain.gate):
        g = 0 returns a rain-free frame exactly as it came.
    streak_bound: 0 (off), or an odd window w in pixels: the final streak layer S^M_t is at most
        what frame t gained over the brightest pixel of the previous rain frame, aligned to t,
        in the w x w window around it (derain.heads.streak_bound): a streak is a brightening that
        the neighbouring frame does not share, so texture both frames hold (to within the flow's
        error, w // 2 pixels) cannot be taken as rain.
    """

    size: str = "small"
    base_channels: int | None = None
    use_sf: bool = True
    use_lstm: bool = True
    use_recovery: bool = True
    use_align: bool = True
    frame_context: bool = False
    row_position: bool = False
    additive_rain: bool = False
    rain_gate: bool = False
    streak_bound: int = 0

    def __post_init__(self):
        self.check(self.size in SIZES, "size", f"one of {sorted(SIZES)}", self.size)
        self.check(
            self.streak_bound in STREAK_BOUND_WINDOWS,
            "streak_bound",
            f"one of {', '.join(map(str, STREAK_BOUND_WINDOWS))} (0 = off, else the window in px)",
            self.streak_bound,
        )
        self.check(
            not (self.streak_bound and not self.use_recovery),
            "streak_bound",
            "0 when use_recovery is false (v3 has no streak layer)",
            self.streak_bound,
        )
        self.check(
            self.base_channels is None
            or (
                not isinstance(self.base_channels, bool)
                and isinstance(self.base_channels, int)
                and 1 <= self.base_channels <= MAX_BASE_CHANNELS
            ),
            "base_channels",
            f"an int from 1 to {MAX_BASE_CHANNELS} or None",
            self.base_channels,
        )
        for name in (
            "use_sf",
            "use_lstm",
            "use_recovery",
            "use_align",
            "frame_context",
            "row_position",
            "additive_rain",
            "rain_gate",
        ):
            self.check(
                isinstance(getattr(self, name), bool), name, "true or false", getattr(self, name)
            )

    @classmethod
    def ablation(cls, name: str, **kw) -> ModelConfig:
        """The paper's Table 4 variants: "v1".."v4" switch one part off, "v5" is the full model."""
        cls.check(name in ABLATIONS, "variant", f"one of {', '.join(ABLATIONS)}", name)
        return cls(**{**ABLATIONS[name], **kw})

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels per U-Net scale."""
        spec = SIZES[self.size]
        base = self.base_channels or spec["base"]
        return tuple(base * m for m in spec["mults"])

    @property
    def n_res(self) -> tuple[int, ...]:
        """Residual blocks per U-Net scale."""
        return SIZES[self.size]["n_res"]


@dataclass
class State:
    """Recurrent state between frames of one video.

    clean_prev: B^M_{t-1} (N,3,H,W), None before the first frame.
    rain_prev: O~_{t-1} (N,3,H,W), None before the first frame.
    lstm: ConvLSTM (h, c), each (N,C,H/2^(L-1),W/2^(L-1)) float32; None without the LSTM (v2).
    Gradients flow through the state; ``detach()`` truncates backpropagation through time.
    """

    clean_prev: torch.Tensor | None
    rain_prev: torch.Tensor | None
    lstm: LSTMState | None

    def detach(self) -> State:
        def d(x):
            return None if x is None else x.detach()

        lstm = None if self.lstm is None else (self.lstm[0].detach(), self.lstm[1].detach())
        return State(d(self.clean_prev), d(self.rain_prev), lstm)


def build_flownet(config: ModelConfig | dict | None = None, **overrides) -> PyramidFlowNet:
    """The flow net of a model of this configuration (for flow pretraining on its own)."""
    spec = SIZES[_config(config, overrides).size]
    return PyramidFlowNet(spec["flow_levels"], spec["flow_channels"], spec["flow_kernel"])


class VideoDerainer(nn.Module):
    """Two-stage recurrent video deraining network.

    ``step`` runs one frame and returns a dict, all float32:
        "B"     B^M_t, the final clean estimate (N,3,H,W), NOT clamped (clamp to [0,1] for display
                or metrics; training uses the unclamped values)
        "B_S"   B^S_t, the single-frame estimate (N,3,H,W)          -- absent without SF-DerainNet (v1)
        "S_S", "U_S", "beta_S" (N,1,H,W), "R_S" (N,3,H,W), "A_S" (N,3,1,1): SF layers -- absent in v1
        "S_M", "U_M", "beta_M", "R_M", "A_M": the MF layers, same shapes
        "flow"  F_t (N,2,H,W), backward flow from B^M_{t-1} to B^S_t in pixels; zeros at t = 0 and
                without MF-AlignNet (v4)
        "g"     the rain gate g_t (N,1,1,1) in [0, 1]                -- only with rain_gate
    ``forward`` runs a clip (N,T,3,H,W) and stacks the same keys on dim 1, e.g. "B" (N,T,3,H,W).
    H and W must be multiples of ``size_multiple`` (pad with derain.InputPadder).
    ``context`` (N,3,64,64) per frame, or (N,T,3,64,64) per clip, is derain.context.frame_context
    of the whole frames when the input is a crop or tile of them; by default the input's own.
    ``rows`` (N,1,H,1) per frame, or (N,T,1,H,1) per clip, is likewise the position of each input
    row in the whole frame (derain.context.row_positions); by default 0 at the input's top row
    and 1 at its bottom one. Each is read only by a model configured for it.
    """

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        config = config or ModelConfig()
        self.config = config
        direct = not config.use_recovery
        # First: the same initial values in every variant.
        self.context = ContextNet(config.channels) if config.frame_context else None
        context = self.context.channels if self.context is not None else 0
        position = POSITION_CHANNELS if config.row_position else 0
        self.sf = (
            SFDerainNet(config.channels, config.n_res, context, direct, position)
            if config.use_sf
            else None
        )
        # Always built: L_Opt-Reg uses the flow net even when frames are not aligned (v4), where
        # it is a fixed regulariser (pretrained weights loaded into it) and takes no gradients.
        self.align = MFAlignNet(build_flownet(config))
        if not config.use_align:
            self.align.requires_grad_(False)
        self.mf = MFDerainNet(
            config.channels, config.n_res, context, config.use_lstm, direct, position
        )
        self.recovery = InverseRecovery(enabled=config.use_recovery)
        self.gate = RainGate(config.channels, context) if config.rain_gate else None
        self.size_multiple = max(2 ** (len(config.channels) - 1), self.flownet.size_multiple)

    @property
    def flownet(self) -> PyramidFlowNet:
        return self.align.flownet

    def _check(self, rain: torch.Tensor, dims: int, what: str) -> None:
        if rain.dim() != dims or rain.shape[-3] != 3 or not rain.is_floating_point():
            raise ValueError(
                f"{what} must be a float tensor {'(N,T,3,H,W)' if dims == 5 else '(N,3,H,W)'} "
                f"in [0, 1]; got {tuple(rain.shape)} {rain.dtype}"
            )
        h, w = rain.shape[-2:]
        if h % self.size_multiple or w % self.size_multiple:
            raise ValueError(
                f"{what}: H and W must be multiples of {self.size_multiple}; got {h}x{w} "
                f"(pad with derain.InputPadder(shape, multiple={self.size_multiple}))"
            )

    def init_state(self, rain_t: torch.Tensor) -> State:
        """State for a new video; rain_t (N,3,H,W), its first frame, sizes it."""
        self._check(rain_t, 4, "rain_t")
        return State(None, None, self.mf.init_state(rain_t))

    def context_vector(
        self, rain_t: torch.Tensor, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The per-frame heads' context vector (N,C) for frames rain_t (N,3,H,W) whose whole
        frames' frame_context is ``context`` (N,3,64,64) (default: rain_t's own); C = 0 without
        ``frame_context``."""
        expected = (rain_t.shape[0], 3, CONTEXT_SIZE, CONTEXT_SIZE)
        if context is not None and tuple(context.shape) != expected:
            raise ValueError(
                f"context must be derain.context.frame_context of the whole frames, shape "
                f"{expected}; got {tuple(context.shape)}"
            )
        if self.context is None:
            return rain_t.new_zeros(rain_t.shape[0], 0)
        return self.context(frame_context(rain_t) if context is None else context)

    def position_map(self, rain_t: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        """The position channels (N,P,H,W) both stages read with frames rain_t (N,3,H,W) whose rows
        sit at ``rows`` (N,1,H,1) of their whole frames (default: rain_t's own, 0 at the top row,
        1 at the bottom); P = 0 without ``row_position``."""
        n, _, h, w = rain_t.shape
        if rows is not None and tuple(rows.shape) != (n, 1, h, 1):
            raise ValueError(
                f"rows must be the row positions of the input in its whole frames "
                f"(derain.context.row_positions), shape {(n, 1, h, 1)}; got {tuple(rows.shape)}"
            )
        if not self.config.row_position:
            return rain_t.new_zeros(n, 0, h, w, dtype=torch.float32)
        if rows is None:
            rows = row_positions(0, h, h).to(rain_t.device).view(1, 1, h, 1).expand(n, 1, h, 1)
        return rows.float().expand(n, POSITION_CHANNELS, h, w)

    def step(
        self,
        rain_t: torch.Tensor,
        state: State,
        context: torch.Tensor | None = None,
        rows: torch.Tensor | None = None,
    ) -> tuple[dict[str, torch.Tensor], State]:
        """One frame O~_t (N,3,H,W) in [0,1] (and its whole frame's context and its row positions,
        see the class docstring) -> (outputs, see the class docstring; next state)."""
        self._check(rain_t, 4, "rain_t")
        if state.rain_prev is not None and state.rain_prev.shape != rain_t.shape:
            raise ValueError(
                f"the state holds frames of shape {tuple(state.rain_prev.shape)}, this frame is "
                f"{tuple(rain_t.shape)}: start a new video with init_state"
            )
        direct = not self.config.use_recovery
        vector = self.context_vector(rain_t, context)
        position = self.position_map(rain_t, rows)
        out: dict[str, torch.Tensor] = {}
        gate = None
        if self.gate is not None:
            gate = out["g"] = self.gate(rain_t, vector)
        if self.sf is not None:
            raw_s = self.sf(rain_t, position, vector)
            layers_s = layers_from_raw(raw_s, self.config.additive_rain)
            clean_s = self._clean(rain_t, layers_s, gate)
            out["B_S"] = clean_s
            out.update({f"{k}_S": layers_s[k] for k in LAYER_NAMES})
        else:
            raw_s, clean_s = prior_raw(rain_t, direct), rain_t.float()

        n, _, h, w = rain_t.shape
        flow = rain_t.new_zeros(n, 2, h, w, dtype=torch.float32)
        if state.clean_prev is None:
            clean_prev, rain_prev = clean_s, rain_t
        elif self.config.use_align:
            flow, clean_prev, rain_prev = self.align(state.clean_prev, clean_s, state.rain_prev)
        else:
            clean_prev, rain_prev = state.clean_prev, state.rain_prev

        delta, lstm = self.mf(
            clean_s, clean_prev, raw_s, rain_t, rain_prev, position, vector, state.lstm
        )
        raw_m = {k: raw_s[k] + delta[k] for k in raw_s}  # v^M = v^S + delta
        layers_m = layers_from_raw(raw_m, self.config.additive_rain)
        if self.config.streak_bound and state.clean_prev is not None:
            bound = streak_bound(rain_t, rain_prev, self.config.streak_bound)
            layers_m["S"] = torch.minimum(layers_m["S"], bound)
        clean_m = self._clean(rain_t, layers_m, gate)
        out["B"] = clean_m
        out.update({f"{k}_M": layers_m[k] for k in LAYER_NAMES})
        out["flow"] = flow
        return out, State(clean_m, rain_t, lstm)

    def _clean(
        self, rain_t: torch.Tensor, layers: dict[str, torch.Tensor], gate: torch.Tensor | None
    ) -> torch.Tensor:
        """Eq. 6 of the layers, through the rain gate when the model has one."""
        clean = self.recovery(rain_t, layers)
        return clean if gate is None else gated(rain_t, clean, gate)

    def forward(
        self,
        rain: torch.Tensor,
        context: torch.Tensor | None = None,
        rows: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """A clip O~ (N,T,3,H,W) in [0,1] (and its whole frames' context (N,T,3,64,64) and row
        positions (N,T,1,H,1), see the class docstring) -> step's outputs stacked on dim 1
        (N,T,...)."""
        self._check(rain, 5, "rain")
        state = self.init_state(rain[:, 0])
        steps = []
        for t in range(rain.shape[1]):
            frame_context = None if context is None else context[:, t]
            frame_rows = None if rows is None else rows[:, t]
            out, state = self.step(rain[:, t], state, frame_context, frame_rows)
            steps.append(out)
        return {k: torch.stack([s[k] for s in steps], dim=1) for k in steps[0]}


def _config(config: ModelConfig | dict | None, overrides: dict) -> ModelConfig:
    if config is None:
        config = ModelConfig()
    elif isinstance(config, dict):
        config = ModelConfig.from_dict(config)
    elif not isinstance(config, ModelConfig):
        raise TypeError(
            f"config must be a ModelConfig, a dict or None; got {type(config).__name__}"
        )
    if overrides:
        config = ModelConfig.from_dict({**config.to_dict(), **overrides})
    return config


def build_model(config: ModelConfig | dict | None = None, **overrides) -> VideoDerainer:
    """A VideoDerainer from a config (or its dict), with keyword overrides, e.g.
    ``build_model(size="paper")``, ``build_model(ModelConfig.ablation("v2"), base_channels=8)``."""
    return VideoDerainer(_config(config, overrides))
