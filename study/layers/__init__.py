"""Anti-aliased downsampling layers: functional forms, modules and a factory.

Layer kinds are registered by name in :data:`LAYERS`; :func:`create_aa` makes one by
name (timm's pattern). What the layers' arguments may be is torch-free
(:mod:`~study.layers.choices`, :mod:`~study.layers.geometry`,
:class:`~study.layers.downsampling.Downsampling`); the package imports each member on
first use, so validating a config imports no torch.
"""

from __future__ import annotations

from study.lazy import lazy_members

_EXPORTS = {
    "APSConv2d": "study.layers.aps",
    "APSPool2d": "study.layers.aps",
    "APS_NORMS": "study.layers.choices",
    "APS_TYPES": "study.layers.aps",
    "AdaptiveBlurConv2d": "study.layers.adaptive",
    "AdaptiveBlurPool2d": "study.layers.adaptive",
    "AvgAPSPool2d": "study.layers.aps",
    "AvgAdaptiveBlurPool2d": "study.layers.adaptive",
    "AvgIdealPool2d": "study.layers.ideal",
    "BLUR_TYPES": "study.layers.registry",
    "BlurAvgPool2d": "study.layers.modules",
    "BlurConv2d": "study.layers.modules",
    "BlurPool2d": "study.layers.modules",
    "CONTENT_AWARE_TYPES": "study.layers.adaptive",
    "CircularAvgPool2d": "study.layers.modules",
    "CircularMaxPool2d": "study.layers.modules",
    "DOWNSAMPLERS": "study.layers.choices",
    "Downsampling": "study.layers.downsampling",
    "FilterLike": "study.layers.choices",
    "FixedTaps": "study.layers.taps",
    "IDEAL_TYPES": "study.layers.ideal",
    "INPUT_DEPENDENT_TYPES": "study.layers.registry",
    "IdealConv2d": "study.layers.ideal",
    "IdealPool2d": "study.layers.ideal",
    "LAYERS": "study.layers.registry",
    "LearnableCutoff": "study.layers.taps",
    "LearnableTaps": "study.layers.taps",
    "MaxAPSPool2d": "study.layers.aps",
    "MaxAdaptiveBlurPool2d": "study.layers.adaptive",
    "MaxBlurPool2d": "study.layers.modules",
    "MaxIdealPool2d": "study.layers.ideal",
    "OWN_LOWPASS": "study.layers.choices",
    "PADDING_MODES": "study.layers.choices",
    "Padding": "study.layers.choices",
    "adaptive_blur_pool2d": "study.layers.adaptive",
    "aps_conv2d": "study.layers.aps",
    "aps_downsample": "study.layers.aps",
    "aps_pool2d": "study.layers.aps",
    "avg_aps_pool2d": "study.layers.aps",
    "avg_blur_pool2d": "study.layers.functional",
    "blur_layers": "study.layers.registry",
    "blur_pool2d": "study.layers.functional",
    "check_choice": "study.layers.choices",
    "create_aa": "study.layers.registry",
    "describe_downsampling": "study.layers.downsampling",
    "downsampling_label": "study.layers.downsampling",
    "filter_parameters": "study.layers.registry",
    "ideal_lowpass2d": "study.layers.ideal",
    "ideal_pool2d": "study.layers.ideal",
    "make_taps": "study.layers.taps",
    "max_aps_pool2d": "study.layers.aps",
    "max_blur_pool2d": "study.layers.functional",
    "pad2d": "study.layers.functional",
}

__getattr__, __all__ = lazy_members(__name__, _EXPORTS)
