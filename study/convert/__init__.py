"""Model surgery: make any torch model's downsampling anti-aliased, or its padding circular.

:func:`antialias` rewrites every strided ``MaxPool2d``, ``AvgPool2d`` and ``Conv2d`` into
its blurred form (Section 3.2; Fig. 1 bottom: evaluate the layer densely, then blur and
subsample) and keeps parameter names, so the original ``state_dict`` loads into the
converted model. :func:`circular` switches a model to circular padding, the paper's
testbed (Section 4.1). Both say what they changed, and warn when they changed nothing.

Where a strided convolution's blur goes (``strided_conv``). Fig. 1's caption applies the
pool analysis "to any strided layer, such as convolution"; the ICML 2019 version
(ConvBlurPool) and antialiased-cnns spell it out as ``ReLU(BN(Conv_s(x)))`` ->
``BlurPool_s(ReLU(BN(Conv_1(x))))``: the layer evaluated densely is conv *and*
activation, and the blur goes after the nonlinearity. ``"after-activation"`` (the
default) does that wherever the model's graph shows ``conv -> [norm] -> activation``.
Each container's own ``forward`` is traced one level deep with ``torch.fx`` (its
children stay single nodes); then the convolution runs at stride 1 and

* an activation *module* called once in the whole model is replaced in place by
  ``nn.Sequential(act, BlurPool2d)``: no new weights, nothing renamed, classes kept;
* a shared activation module (torchvision's ``BasicBlock`` calls ``self.relu`` twice), one
  with weights, or a functional one (``F.relu``, ``torch.relu``, ``x.relu()``) has the
  blur inserted into that container's graph, and the container becomes a
  ``torch.fx.GraphModule`` holding the same children (same parameter names) plus the
  blur, in the same place in its parent: ``model.layer2[0]`` still works, but is no
  longer an instance of ``BasicBlock`` (the report lists every such rewrite).

Everything else stays ``"after-conv"``, :class:`BlurConv2d`'s placement, with the reason
in the report: a convolution with no activation after it (ResNet's 1x1 ``downsample``:
blurred before the 1x1 conv, which commutes with the blur, as antialiased-cnns does; a
ConvNeXt patchify stem, followed by a norm only), a container that cannot be traced
(data-dependent Python control flow) or whose traced forward depends on
``self.training``, a convolution called more than once, and an activation that would
need the *top-level* model's forward rewritten (its class would change).

>>> import torchvision
>>> model = antialias(torchvision.models.vgg11(), "binomial-5", log=False)
>>> type(model.features[2]).__name__, str(model.features[2].spec)
('MaxBlurPool2d', 'binomial-5')
>>> report = convert_downsampling(torchvision.models.resnet18(), "binomial-5")
>>> report.placements()["layer2.0.conv1"], report.placements()["conv1"]
('after-activation (relu)', 'after-activation (relu)')
>>> print(report.placements()["layer2.0.downsample.0"])
after-conv (fallback: no activation after it in layer2.0.downsample:
            Conv2d -> BatchNorm2d -> output)

``downsample="aps"`` makes the same conversions with adaptive polyphase sampling
(:mod:`study.layers.aps`) instead of plain subsampling after the blur: max-pools become
:class:`~study.layers.MaxAPSPool2d`, average pools :class:`~study.layers.APSPool2d` (or
:class:`~study.layers.AvgAPSPool2d` with ``avgpool="dense"``), strided convolutions
:class:`~study.layers.APSConv2d` or an :class:`~study.layers.APSPool2d` after their
activation. Two branches that are summed must subsample the same grid, so an APS layer
*follows* (reuses the phases of) the closest earlier APS layer of an enclosing block:
one whose parent module strictly contains its own parent, like ``layer2.0.conv1``'s for
``layer2.0.downsample.0`` (the report lists these links). With ``filter="delta"`` it is
the APS paper's plain APS.

>>> report = convert_downsampling(torchvision.models.resnet18(), "delta", downsample="aps")
>>> report.links[0]
('layer2.0.downsample.0', 'layer2.0.conv1')
"""

from study.convert.circular import circular
from study.convert.replace import (
    STRIDED_CONV,
    AvgPoolMode,
    StridedConv,
    antialias,
    convert_downsampling,
)
from study.convert.report import Change, ConversionReport, NothingConvertedWarning

__all__ = [
    "STRIDED_CONV",
    "AvgPoolMode",
    "Change",
    "ConversionReport",
    "NothingConvertedWarning",
    "StridedConv",
    "antialias",
    "circular",
    "convert_downsampling",
]
