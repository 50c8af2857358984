"""An inference-only form of the network with fewer passes over memory, same function.

On a CPU without native bf16, a third of the forward pass of the shipped network went to
element-wise passes over large activations (ReLU, the additions of the decoder, upsampling)
rather than to the convolutions. :class:`FusedMiningNet` computes the same function as a
:class:`~asmspotter.detect.model.MiningNet` whose batch normalisations are folded
(:func:`asmspotter.detect.loader.fold_batch_norm`), with four changes that are exact in
real arithmetic (float32 rounding aside, about 1e-6 in probability):

* **Activation fused into the convolution.** Each convolution + ReLU is one oneDNN call
  with a ReLU post-op (``torch.ops.mkldnn._convolution_pointwise``), not a convolution and
  a second pass over its output.
* **Decoder additions fused.** ``relu(lateral(skip) + upsampled)`` is one convolution with an
  ``add`` and a ReLU post-op: the upsampled tensor is added while the convolution's output
  is written.
* **Weights laid out once** in oneDNN's blocked format
  (``torch.ops.mkldnn._reorder_convolution_weight``), not reordered at every call.
* **1 x 1 reductions moved before the upsampling.** The decoder of version 3 reduces the
  channels with a 1 x 1 convolution after adding the upsampled coarse features to the
  lateral ones. Bilinear upsampling is linear and per channel (its weights sum to one), so
  ``W (up(a) + L s) + c = up(W a) + (W L) s + (W b_L + c)``: the reduction runs on the
  coarse features before they are upsampled (a quarter of the pixels, half the channels to
  upsample) and merges with the lateral 1 x 1 convolution into one.

Only version 3 networks, in eval mode, on the CPU with oneDNN are fused
(:func:`can_fuse`); others keep the plain forward pass. A fused network keeps its source:
input off the CPU, under autocast (bf16) or needing gradients goes through the plain one.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from asmspotter.detect.model import MiningNet, local_standardise

#: One convolution: weight, bias, padding, stride, dilation.
_Conv = tuple[torch.Tensor, torch.Tensor, list[int], list[int], list[int]]


def can_fuse(model: nn.Module, device: str) -> bool:
    """Return whether :class:`FusedMiningNet` can stand in for ``model`` on ``device``.

    It needs a folded (no batch normalisation) version 3 network, the CPU, and torch's
    oneDNN fused convolutions.
    """
    return (
        isinstance(model, MiningNet)
        and not isinstance(model, FusedMiningNet)
        and model.config.version == 3
        and device == "cpu"
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
        and hasattr(torch.ops.mkldnn, "_reorder_convolution_weight")
        and not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    )


def _conv(module: nn.Module) -> _Conv:
    """Return the parameters of a convolution (its bias zero when it has none)."""
    if not isinstance(module, nn.Conv2d) or module.groups != 1:
        raise TypeError(f"not a plain convolution: {module}")
    w = module.weight.detach()
    b = module.bias.detach() if module.bias is not None else torch.zeros(w.shape[0])
    pad = module.padding
    if isinstance(pad, str):
        raise TypeError(f"convolution with padding {pad!r}: give the padding in pixels")
    return (w, b, list(pad), list(module.stride), list(module.dilation))


def _blocks(seq: nn.Module) -> list[_Conv]:
    """Return the convolutions of a run of folded blocks (each followed by a ReLU), in order."""
    return [_conv(m) for m in seq.modules() if isinstance(m, nn.Conv2d)]


def _merge(reduce: _Conv, lateral: _Conv) -> tuple[_Conv, _Conv]:
    """Split ``reduce(up(a) + lateral(s))`` into ``up(reduce_w a) + merged(s)``.

    Returns:
        (the reduction without its bias, for the coarse features; the merged 1 x 1
        convolution of the skip features, carrying both biases).

    """
    wr, br = reduce[0][:, :, 0, 0], reduce[1]
    wl, bl = lateral[0][:, :, 0, 0], lateral[1]
    merged_w = (wr.double() @ wl.double()).float()[:, :, None, None]
    merged_b = (wr.double() @ bl.double() + br.double()).float()
    ones = [1, 1]
    coarse = (reduce[0], torch.zeros_like(br), [0, 0], ones, ones)
    return coarse, (merged_w.contiguous(), merged_b, [0, 0], ones, ones)


def _packed(conv: _Conv) -> _Conv:
    """Return ``conv`` with its weight reordered into oneDNN's layout (the same values)."""
    w, b, pad, stride, dil = conv
    return (
        torch.ops.mkldnn._reorder_convolution_weight(w, pad, stride, dil, 1),
        b,
        pad,
        stride,
        dil,
    )


class FusedMiningNet(MiningNet):
    """A folded version 3 :class:`MiningNet` run with fused oneDNN convolutions.

    Inference only (eval mode, no gradients, CPU, float32). Other input (under autocast,
    on another device, needing gradients) goes through the source network, kept as
    ``plain``.

    Args:
        source: a folded network (:func:`asmspotter.detect.loader.fold_batch_norm`) that
            :func:`can_fuse` accepts.

    """

    def __init__(self, source: MiningNet) -> None:
        nn.Module.__init__(self)  # the layers are the source's, kept as fused parameters
        self.config = source.config
        self.frozen: tuple[str, ...] = ()
        self.plain = source
        self.register_buffer("mean", source.get_buffer("mean").clone())
        self.register_buffer("std", source.get_buffer("std").clone())
        # every weight in oneDNN's blocked layout once (_packed), not reordered on every call
        stages = (source.stem, source.down1, source.down2, source.down3)
        self.encoder = [[_packed(c) for c in _blocks(stage)] for stage in stages]
        fuse2, fuse1 = _blocks(source.fuse2), _blocks(source.fuse1)
        self.reduce2, self.skip2 = map(_packed, _merge(fuse2[0], _conv(source.lat2)))
        self.reduce1, self.skip1 = map(_packed, _merge(fuse1[0], _conv(source.lat1)))
        self.conv2 = [_packed(c) for c in fuse2[1:]]
        self.conv1 = [_packed(c) for c in fuse1[1:]]
        self.skip0, self.logits = _packed(_conv(source.lat0)), _packed(_conv(source.head))
        self.eval()

    @staticmethod
    def _run(x: torch.Tensor, conv: _Conv, relu: bool = True, add: Any = None) -> torch.Tensor:
        """One convolution, with a ReLU post-op and optionally ``add`` summed in first."""
        w, b, pad, stride, dil = conv
        if add is not None:
            return torch.ops.mkldnn._convolution_pointwise(
                x, add, w, b, pad, stride, dil, 1, "add", 1.0, "relu", [], ""
            )
        return torch.ops.mkldnn._convolution_pointwise(
            x, w, b, pad, stride, dil, 1, "relu" if relu else "none", [], ""
        )

    def _stage(self, x: torch.Tensor, convs: list[_Conv]) -> torch.Tensor:
        """Run convolutions with ReLU, one after the other."""
        for conv in convs:
            x = self._run(x, conv)
        return x

    def _up(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Upsample ``x`` bilinearly to ``like``'s rows and columns (as the network does)."""
        return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits (batch, 1, rows, cols) for input (batch, bands, rows, cols)."""
        if x.ndim != 4 or x.shape[1] != len(self.config.bands):
            raise ValueError(
                f"expected input (batch, {len(self.config.bands)}, rows, cols) for bands "
                f"{', '.join(self.config.bands)}; got {tuple(x.shape)}"
            )
        dev = x.device.type
        if dev != "cpu" or torch.is_autocast_enabled(dev) or torch.is_grad_enabled():
            return self.plain(x)
        h, w = x.shape[-2:]
        ph, pw = (-h) % 8, (-w) % 8
        x = (x - self.get_buffer("mean")) / self.get_buffer("std")
        if self.config.local_norm:
            x = local_standardise(x, self.config.local_norm)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        x = x.contiguous(memory_format=torch.channels_last)
        f0 = self._stage(x, self.encoder[0])
        f1 = self._stage(f0, self.encoder[1])
        f2 = self._stage(f1, self.encoder[2])
        f3 = self._stage(f2, self.encoder[3])
        y = self._up(self._run(f3, self.reduce2, relu=False), f2)
        y = self._stage(self._run(f2, self.skip2, add=y), self.conv2)
        y = self._up(self._run(y, self.reduce1, relu=False), f1)
        y = self._stage(self._run(f1, self.skip1, add=y), self.conv1)
        y = self._run(f0, self.skip0, add=self._up(y, f0))
        return self._run(y, self.logits, relu=False)[..., :h, :w]
