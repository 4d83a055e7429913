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

from __future__ import annotations

import fnmatch
import logging
import warnings
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import fx, nn

from study.layers import (
    APS_NORMS,
    APS_TYPES,
    BLUR_TYPES,
    CONTENT_AWARE_TYPES,
    IDEAL_TYPES,
    PADDING_MODES,
    APSConv2d,
    BlurConv2d,
    CircularAvgPool2d,
    CircularMaxPool2d,
    Downsampling,
    Padding,
    check_choice,
)
from study.layers.modules import FilterLike

logger = logging.getLogger(__name__)

AvgPoolMode = Literal["replace", "dense"]
StridedConv = Literal["after-activation", "after-conv"]
STRIDED_CONV: tuple[str, ...] = ("after-activation", "after-conv")


class NothingConvertedWarning(UserWarning):
    """A conversion found nothing to change in the model."""


@dataclass(frozen=True)
class Change:
    """One module swapped: its dotted name, a short description before and after, and,
    for a strided convolution, where its blur went (``placement``)."""

    name: str
    before: str
    after: str
    placement: str = ""


@dataclass
class ConversionReport:
    """What a conversion replaced, what it left alone and why, and which containers it
    rewrote as ``torch.fx`` graph modules (and why)."""

    replaced: list[Change] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    rewritten: list[tuple[str, str]] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)
    """``(follower, leader)``: APS layers (by the name of the layer converted) that
    subsample on the phases their leader chose."""

    def counts(self) -> dict[str, int]:
        """Number of replacements per original layer type, e.g. ``{"MaxPool2d": 5}``."""
        out: dict[str, int] = {}
        for change in self.replaced:
            kind = change.before.split("(")[0]
            out[kind] = out.get(kind, 0) + 1
        return out

    def placements(self) -> dict[str, str]:
        """Strided convolution name -> where its blur went, e.g. ``"after-activation
        (relu)"`` or ``"after-conv (fallback: why)"``."""
        return {c.name: c.placement for c in self.replaced if c.placement}

    def __str__(self) -> str:
        if not self.replaced:
            head = "replaced nothing"
        else:
            kinds = ", ".join(f"{n} {k}" for k, n in self.counts().items())
            head = f"replaced {len(self.replaced)} layers ({kinds})"
        lines = [head]
        for c in self.replaced:
            where = f" [{c.placement}]" if c.placement else ""
            lines.append(f"  {c.name}: {c.before} -> {c.after}{where}")
        lines += [f"  rewrote {name}: {why}" for name, why in self.rewritten]
        lines += [f"  linked {name}: APS follows {leader}'s phases" for name, leader in self.links]
        lines += [f"  left {name}: {why}" for name, why in self.skipped]
        return "\n".join(lines)


def antialias(
    model: nn.Module,
    filter: FilterLike = "binomial-5",
    padding: Padding | None = None,
    *,
    strided_conv: StridedConv = "after-activation",
    keep_stem: bool = False,
    avgpool: AvgPoolMode = "replace",
    exclude: Iterable[str] = (),
    downsample: str = "blur",
    aps_norm: str = "l2",
    adaptive_taps: int = 3,
    adaptive_groups: int = 2,
    ideal_cutoff: float | None = None,
    ideal_edge: str = "zero",
    log: bool = True,
) -> nn.Module:
    """Blur every downsampling layer of ``model`` in place, and return it.

    Args:
        filter: any :mod:`study.filters` spec; learnable specs give each layer its own taps.
        padding: the blurs' padding mode; ``None`` picks ``circular`` when every padded
            convolution of the model is circular (the paper's testbed), else ``reflect``
            (antialiased-cnns' default).
        strided_conv: where a strided convolution's blur goes. ``"after-activation"``
            (the paper's, Fig. 1 and Section 3): the convolution runs at stride 1 and
            the blur-pool follows the activation after it (``conv -> [norm] -> act``),
            wherever the traced graph shows that pattern, else ``"after-conv"`` as a
            reported fallback. ``"after-conv"``: :class:`BlurConv2d` blurs the
            convolution's output, before its norm and activation.
        keep_stem: leave the model's first convolution strided as it is
            (antialiased-cnns' choice for ResNets).
        avgpool: ``"replace"`` swaps an ``AvgPool2d(k, stride=k)`` for a blur-pool with
            ``filter`` (its box *is* a rect-k blur, Appendix A: ``rect-2`` gives back the
            original); ``"dense"`` keeps the box, pooled densely, and blurs after it.
        exclude: ``fnmatch`` patterns of module names to leave alone.
        downsample: the operator (:class:`~study.layers.Downsampling`): ``"blur"`` (blur,
            then subsample), ``"aps"`` (blur, then adaptive polyphase sampling choosing
            by ``aps_norm``: ``l2``, ``l1``, ``linf``), ``"adaptive"`` (a predicted
            ``adaptive_taps``-square low-pass per pixel and per one of
            ``adaptive_groups`` channel groups) or ``"ideal"`` (the ideal low-pass up to
            ``ideal_cutoff`` x Nyquist, default ``1/stride``, the bin on the cutoff
            weighted by ``ideal_edge``: ``"zero"`` or ``"half"``); the last two need
            ``filter="delta"``.
        log: log the report at INFO level.

    The report of what changed is :func:`convert_downsampling`'s; a
    :class:`NothingConvertedWarning` is raised as a warning when nothing was replaced.
    """
    report = convert_downsampling(
        model,
        filter,
        padding,
        strided_conv=strided_conv,
        keep_stem=keep_stem,
        avgpool=avgpool,
        exclude=exclude,
        downsample=downsample,
        aps_norm=aps_norm,
        adaptive_taps=adaptive_taps,
        adaptive_groups=adaptive_groups,
        ideal_cutoff=ideal_cutoff,
        ideal_edge=ideal_edge,
    )
    _announce(report, "antialias", log)
    return model


def convert_downsampling(
    model: nn.Module,
    filter: FilterLike = "binomial-5",
    padding: Padding | None = None,
    *,
    strided_conv: StridedConv = "after-activation",
    keep_stem: bool = False,
    avgpool: AvgPoolMode = "replace",
    exclude: Iterable[str] = (),
    downsample: str = "blur",
    aps_norm: str = "l2",
    adaptive_taps: int = 3,
    adaptive_groups: int = 2,
    ideal_cutoff: float | None = None,
    ideal_edge: str = "zero",
) -> ConversionReport:
    """:func:`antialias`'s work, returning the :class:`ConversionReport`."""
    check_choice("aps_norm", aps_norm, APS_NORMS)
    operator = Downsampling(
        downsample, filter, aps_norm, adaptive_taps, adaptive_groups, ideal_cutoff, ideal_edge
    )
    check_choice("avgpool", avgpool, ("replace", "dense"))
    check_choice("strided_conv", strided_conv, STRIDED_CONV)
    if not isinstance(keep_stem, bool):
        raise ValueError(f"keep_stem must be one of True, False; got {keep_stem!r}")
    if padding is None:
        padding = "circular" if _all_circular(model) else "reflect"
    check_choice("padding", padding, PADDING_MODES)
    report = ConversionReport()
    layers = _layers_to_blur(model, tuple(exclude), keep_stem, report)
    convs = [name for name, module in layers if isinstance(module, nn.Conv2d)]
    plans: dict[str, _Plan] = {}
    fallbacks: dict[str, str] = {}
    if strided_conv == "after-activation" and convs:
        plans, fallbacks = _plan_after_activation(model, convs)
    adaptive: dict[str, nn.Module] = {}  # converted layer name -> its APS layer
    blurs = _apply_plans(model, plans, operator, padding, report, adaptive)
    for name, module in layers:
        if name in blurs:
            report.replaced.append(blurs[name])
            continue
        new = _blurred(module, operator, padding, avgpool)
        if isinstance(new, str):
            report.skipped.append((name, new))
            continue
        _set_submodule(model, name, _moved(new, module, model))
        if operator.kind == "aps":
            adaptive[name] = new.blur if isinstance(new, APSConv2d) else new
        placement = ""
        if isinstance(module, nn.Conv2d):
            why = fallbacks.get(name)
            placement = f"after-conv (fallback: {why})" if why else "after-conv"
        report.replaced.append(Change(name, _short(module), _short(new), placement))
    for name, module in model.named_modules():
        if isinstance(module, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
            report.skipped.append((name, "adaptive pooling has no stride to blur"))
    report.links = _link_branches(adaptive)
    return report


def _link_branches(adaptive: dict[str, nn.Module]) -> list[tuple[str, str]]:
    """Make each APS layer follow the closest earlier one whose parent strictly contains
    its own parent (a block's shortcut follows the block's main branch)."""
    links = []
    names = list(adaptive)
    for index, name in enumerate(names):
        parent = name.rpartition(".")[0]
        for leader in reversed(names[:index]):
            leader_parent = leader.rpartition(".")[0]
            if leader_parent and parent.startswith(f"{leader_parent}."):
                adaptive[name].follow(adaptive[leader])
                links.append((name, leader))
                break
    return links


def _layers_to_blur(
    model: nn.Module, patterns: tuple[str, ...], keep_stem: bool, report: ConversionReport
) -> list[tuple[str, nn.Module]]:
    """The strided layers to convert, in model order; the others go to ``report.skipped``."""
    stem = next((n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), None)
    layers: list[tuple[str, nn.Module]] = []
    blurred_convs: list[str] = []
    for name, module in model.named_modules():
        if not _is_downsampling(module) or any(name.startswith(f"{c}.") for c in blurred_convs):
            continue
        if isinstance(module, BlurConv2d):
            blurred_convs.append(name)
        reason = None
        if any(fnmatch.fnmatchcase(name, p) for p in patterns):
            reason = "excluded by pattern"
        elif isinstance(module, (*BLUR_TYPES, BlurConv2d)):
            reason = "already anti-aliased"
        elif keep_stem and name == stem:
            reason = "stem convolution (keep_stem=True)"
        if reason:
            report.skipped.append((name, reason))
        else:
            layers.append((name, module))
    return layers


# --- after-activation placement: each container's forward, traced one level deep -------

_ACTIVATIONS = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.RReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Hardtanh,
    nn.Softplus,
    nn.Sigmoid,
    nn.Tanh,
)
_ACTIVATION_FUNCTIONS = {
    F.relu: "relu",
    torch.relu: "relu",
    torch.relu_: "relu",
    F.relu6: "relu6",
    F.leaky_relu: "leaky_relu",
    F.leaky_relu_: "leaky_relu",
    F.elu: "elu",
    F.elu_: "elu",
    F.selu: "selu",
    F.celu: "celu",
    F.gelu: "gelu",
    F.silu: "silu",
    F.mish: "mish",
    F.hardswish: "hardswish",
    F.hardsigmoid: "hardsigmoid",
    F.hardtanh: "hardtanh",
    F.hardtanh_: "hardtanh",
    F.softplus: "softplus",
    torch.sigmoid: "sigmoid",
    torch.tanh: "tanh",
}
_ACTIVATION_METHODS = {"relu", "relu_", "sigmoid", "sigmoid_", "tanh", "tanh_"}
_NORMS = (
    nn.BatchNorm2d,
    nn.LazyBatchNorm2d,
    nn.SyncBatchNorm,
    nn.InstanceNorm2d,
    nn.LazyInstanceNorm2d,
    nn.GroupNorm,
    nn.Identity,
)
_NORM_NAMES = ("FrozenBatchNorm2d", "LayerNorm2d")  # torchvision's, matched by class name
_BLURRED = (BlurConv2d, *BLUR_TYPES)


class _OneLevelTracer(fx.Tracer):
    """Traces a module's own ``forward``: every submodule it calls stays one node."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return True


@dataclass
class _Traces:
    """Every container's forward as a graph, and who calls which module from where."""

    graphs: dict[int, fx.Graph] = field(default_factory=dict)  # by id(container)
    errors: dict[str, str] = field(default_factory=dict)  # path -> why it did not trace
    calls: dict[int, list[tuple[str, fx.Node]]] = field(
        default_factory=lambda: defaultdict(list)
    )  # id(module) -> (path of the caller, its node)
    unknown: set[int] = field(default_factory=set)  # maybe called by an untraced forward
    paths: dict[int, list[str]] = field(default_factory=lambda: defaultdict(list))

    def called_once(self, module: nn.Module) -> bool:
        key = id(module)
        return len(self.calls[key]) == 1 and key not in self.unknown and len(self.paths[key]) == 1


def _trace_containers(model: nn.Module) -> _Traces:
    """Trace the forward of every container that runs (top-down: a container runs when
    a traced forward calls it, or when its parent runs and could not be traced)."""
    traces = _Traces()
    running, called = {""}, set()
    for path, module in model.named_modules(remove_duplicate=False):
        traces.paths[id(module)].append(path)
        parent = path.rpartition(".")[0]
        if path and parent in running and parent in traces.errors:
            traces.unknown.add(id(module))
        elif path and path not in called:
            continue
        running.add(path)
        if next(module.children(), None) is None or isinstance(module, _BLURRED):
            continue
        graph = traces.graphs.get(id(module))
        if graph is None:
            try:
                graph = traces.graphs[id(module)] = _OneLevelTracer().trace(module)
            except Exception as error:  # tracing runs arbitrary forward code
                traces.errors[path] = _first_line(error)
                continue
        for node in graph.nodes:
            if node.op == "call_module":
                traces.calls[id(module.get_submodule(node.target))].append((path, node))
                called.add(_join(path, node.target))
    return traces


@dataclass
class _Plan:
    """Where one strided convolution's blur goes: after ``act`` in ``owner``'s forward,
    either by wrapping the activation module at ``wrap`` or by rewriting ``owner``."""

    owner: str
    act: fx.Node
    kind: str
    wrap: str | None
    why_rewrite: str = ""


def _plan_after_activation(
    model: nn.Module, convs: list[str]
) -> tuple[dict[str, _Plan], dict[str, str]]:
    """Plans for the convolutions followed by an activation; fallback reasons for the rest."""
    traces = _trace_containers(model)
    plans: dict[str, _Plan] = {}
    fallbacks: dict[str, str] = {}
    for name in convs:
        plan = _plan_one(model, name, traces)
        if isinstance(plan, str):
            fallbacks[name] = plan
        else:
            plans[name] = plan
    for owner in {p.owner for p in plans.values() if p.wrap is None}:
        why = _cannot_rewrite(model, owner, traces)
        for name, plan in list(plans.items()):
            if plan.owner != owner:
                continue
            if not why:
                plan.wrap = None  # one rewrite of this forward places all its blurs
            elif plan.wrap is None:
                fallbacks[name] = f"its {plan.kind} {plan.why_rewrite}, and {why}"
                del plans[name]
    return plans, fallbacks


def _plan_one(model: nn.Module, name: str, traces: _Traces) -> _Plan | str:
    conv = model.get_submodule(name)
    sites = traces.calls[id(conv)]
    if len(sites) != 1 or id(conv) in traces.unknown:
        if sites:
            if len(sites) > 1:
                return f"it is called {len(sites)} times"
            return "an untraceable forward may call it too"
        untraced = _untraced_ancestor(name, traces.errors)
        if untraced is None:
            return "no traced forward calls it"
        return f"{untraced or 'the model'} cannot be traced ({traces.errors[untraced]})"
    owner_path, node = sites[0]
    owner = model.get_submodule(owner_path)
    found = _activation_after(node, owner, owner_path)
    if isinstance(found, str):
        return found
    act, kind = found
    if act.op != "call_module":
        return _Plan(owner_path, act, kind, None, f"is functional ({_describe(act, owner)})")
    module = owner.get_submodule(act.target)
    if not traces.called_once(module):
        calls = len(traces.calls[id(module)])
        return _Plan(owner_path, act, kind, None, f"module is shared (called {calls} times)")
    if module.state_dict():
        return _Plan(owner_path, act, kind, None, "module has parameters or buffers")
    return _Plan(owner_path, act, kind, _join(owner_path, act.target))


def _activation_after(node: fx.Node, owner: nn.Module, path: str) -> tuple[fx.Node, str] | str:
    """The activation that alone consumes ``node`` (through norm layers), or why none."""
    chain = [_describe(node, owner)]
    while True:
        users = list(node.users)
        if len(users) != 1 or users[0].args[:1] != (node,):
            chain.append(f"{len(users)} uses" if len(users) != 1 else _describe(users[0], owner))
            break
        node = users[0]
        kind = _activation_kind(node, owner)
        if kind:
            return node, kind
        chain.append(_describe(node, owner))
        if not _is_norm(node, owner):
            break
    return f"no activation after it in {path or 'the model'}: {' -> '.join(chain)}"


def _activation_kind(node: fx.Node, owner: nn.Module) -> str | None:
    """``"relu"``, ``"hardswish"``, ...: the activation ``node`` calls, if it calls one."""
    if node.op == "call_module":
        module = owner.get_submodule(node.target)
        return type(module).__name__.lower() if isinstance(module, _ACTIVATIONS) else None
    if node.op == "call_function" and _hashable(node.target):
        return _ACTIVATION_FUNCTIONS.get(node.target)
    if node.op == "call_method" and node.target in _ACTIVATION_METHODS:
        return str(node.target).rstrip("_")
    return None


def _is_norm(node: fx.Node, owner: nn.Module) -> bool:
    if node.op != "call_module":
        return False
    module = owner.get_submodule(node.target)
    return isinstance(module, _NORMS) or type(module).__name__ in _NORM_NAMES


def _describe(node: fx.Node, owner: nn.Module) -> str:
    if node.op == "call_module":
        return type(owner.get_submodule(node.target)).__name__
    if node.op == "call_function":
        module = getattr(node.target, "__module__", None) or "torch"
        return f"{module}.{getattr(node.target, '__name__', node.target)}"
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    return str(node.op)


def _cannot_rewrite(model: nn.Module, owner: str, traces: _Traces) -> str | None:
    """Why the forward of the container at ``owner`` cannot be rewritten, or None."""
    if not owner:
        return "the top-level model's forward is not rewritten (its class would change)"
    module = model.get_submodule(owner)
    if len(traces.paths[id(module)]) > 1:
        return f"{owner} is shared"
    codes = []
    training = module.training
    try:
        for mode in (False, True):
            module.training = mode  # this container only: its children stay leaves
            codes.append(_OneLevelTracer().trace(module).python_code("self").src)
    finally:
        module.training = training
    if codes[0] != codes[1]:
        return f"{owner}'s forward depends on self.training"
    return None


def _apply_plans(
    model: nn.Module,
    plans: dict[str, _Plan],
    operator: Downsampling,
    padding: Padding,
    report: ConversionReport,
    adaptive: dict[str, nn.Module] | None = None,
) -> dict[str, Change]:
    """Run each planned convolution at stride 1 and blur (or the ``operator``'s pool)
    after its activation; the APS layers go to ``adaptive`` by convolution name."""
    changes: dict[str, Change] = {}
    rewrites: dict[str, dict[str, tuple[fx.Node, nn.Module]]] = defaultdict(dict)
    for name, plan in plans.items():
        conv = model.get_submodule(name)
        before = _short(conv)
        blur = operator.pool(conv.out_channels, conv.stride, padding)
        if operator.kind == "aps" and adaptive is not None:
            adaptive[name] = blur
        blur = _moved(blur, conv, model)
        conv.stride = (1, 1)
        if plan.wrap is not None:
            _set_submodule(model, plan.wrap, nn.Sequential(model.get_submodule(plan.wrap), blur))
            where = f"{plan.wrap}.1"
        else:
            owner = model.get_submodule(plan.owner)
            blur_name = _free_name(owner, name.rpartition(".")[2] + "_aa", rewrites[plan.owner])
            rewrites[plan.owner][blur_name] = (plan.act, blur)
            where = _join(plan.owner, blur_name)
        after = f"Conv2d(stride={conv.stride}) + {_short(blur)} at {where}"
        changes[name] = Change(name, before, after, f"after-activation ({plan.kind})")
    for owner, blurs in rewrites.items():
        module = model.get_submodule(owner)
        _set_submodule(model, owner, _rewritten(module, blurs))
        mine = [p for p in plans.values() if p.owner == owner and p.why_rewrite]
        why = "; ".join(sorted({f"its {p.kind} {p.why_rewrite}" for p in mine}))
        report.rewritten.append((owner, f"{type(module).__name__} -> torch.fx GraphModule: {why}"))
    return changes


def _rewritten(module: nn.Module, blurs: dict[str, tuple[fx.Node, nn.Module]]) -> fx.GraphModule:
    """``module``'s forward with each blur called after its activation node, as a
    ``GraphModule`` holding the same children, parameters, buffers and attributes
    (so parameter names do not change), plus the blurs."""
    graph = next(iter(blurs.values()))[0].graph
    for blur_name, (act, _) in blurs.items():
        with graph.inserting_after(act):
            blurred = graph.call_module(blur_name, (act,))
        act.replace_all_uses_with(blurred, delete_user_cb=lambda user, b=blurred: user is not b)
    graph.lint()
    holder = nn.Module()
    # nn.Module's own registries, copied in order (GraphModule keeps only what the
    # graph uses, in the order it uses them)
    holder._modules = {**module._modules, **{n: b for n, (_, b) in blurs.items()}}
    holder._parameters = dict(module._parameters)
    holder._buffers = dict(module._buffers)
    holder._non_persistent_buffers_set = set(module._non_persistent_buffers_set)
    new = fx.GraphModule(holder, graph, class_name=type(module).__name__)
    for registry in ("_modules", "_parameters", "_buffers", "_non_persistent_buffers_set"):
        setattr(new, registry, getattr(holder, registry))
    new.training = module.training
    hooks = [key for key in vars(nn.Module()) if "hook" in key]  # forward hooks and others
    kept = {
        key: value
        for key, value in vars(module).items()
        if key in hooks or (not key.startswith("_") and key not in vars(new))
    }
    for key, value in kept.items():
        setattr(new, key, value)
    new.meta["_user_preserved_attributes"] = kept  # fx sets these again after a deepcopy
    return new


def _free_name(module: nn.Module, name: str, taken: dict[str, Any]) -> str:
    candidate, index = name, 1
    while hasattr(module, candidate) or candidate in taken:
        candidate, index = f"{name}{index}", index + 1
    return candidate


def _untraced_ancestor(name: str, errors: dict[str, str]) -> str | None:
    """The closest container above ``name`` whose forward could not be traced."""
    parts = name.split(".")
    for end in range(len(parts) - 1, -1, -1):
        path = ".".join(parts[:end])
        if path in errors:
            return path
    return None


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if len(line) <= 120 else line[:117] + "..."


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _moved(new: nn.Module, old: nn.Module, model: nn.Module) -> nn.Module:
    """``new`` on the device (and floating dtype) of ``old``'s tensors, else of the
    model's first tensor."""
    for source in (old, model):
        tensor = next(iter((*source.parameters(), *source.buffers())), None)
        if tensor is not None:
            if tensor.is_floating_point():
                return new.to(device=tensor.device, dtype=tensor.dtype)
            return new.to(tensor.device)
    return new


def circular(model: nn.Module, *, log: bool = True) -> nn.Module:
    """Switch every convolution, blur, pool and pad of ``model`` to circular padding, in
    place (Section 4.1: kernels wrap around the edge, so circular shifts commute with
    every layer but subsampling). Returns the model."""
    report = ConversionReport()
    for name, module in list(model.named_modules()):
        if isinstance(module, nn.Conv2d) and module.padding_mode != "circular":
            before = _short(module)
            module.padding_mode = "circular"
            report.replaced.append(Change(name, before, _short(module)))
        elif isinstance(module, BLUR_TYPES) and module.padding != "circular":
            before = _short(module)
            module.padding = "circular"
            report.replaced.append(Change(name, before, _short(module)))
        elif isinstance(module, nn.MaxPool2d | nn.AvgPool2d) and _padding(module) != (0, 0):
            if isinstance(module, CircularMaxPool2d | CircularAvgPool2d):
                continue
            wrapped = _circular_pool(module)
            _set_submodule(model, name, wrapped)
            report.replaced.append(Change(name, _short(module), type(wrapped).__name__))
        elif isinstance(
            module, nn.ZeroPad2d | nn.ConstantPad2d | nn.ReflectionPad2d | nn.ReplicationPad2d
        ):
            _set_submodule(model, name, nn.CircularPad2d(module.padding))
            report.replaced.append(Change(name, _short(module), "CircularPad2d"))
    _announce(report, "circular", log)
    return model


def _circular_pool(pool: nn.MaxPool2d | nn.AvgPool2d) -> nn.Module:
    """The same pool, padding circularly."""
    if isinstance(pool, nn.MaxPool2d):
        return CircularMaxPool2d(
            pool.kernel_size,
            pool.stride,
            pool.padding,
            pool.dilation,
            pool.return_indices,
            pool.ceil_mode,
        )
    return CircularAvgPool2d(
        pool.kernel_size, pool.stride, pool.padding, pool.ceil_mode, True, pool.divisor_override
    )


def _blurred(module: nn.Module, operator: Downsampling, padding: Padding, avgpool: AvgPoolMode):
    """The ``operator``'s replacement of a downsampling layer, or a string saying why
    not."""
    if isinstance(module, nn.Conv2d):
        return operator.conv(module, padding)
    kernel, stride = _pair(module.kernel_size), _pair(module.stride)
    pad, ceil_mode = _padding(module), module.ceil_mode
    if isinstance(module, nn.MaxPool2d) and (
        _pair(module.dilation) != (1, 1) or module.return_indices
    ):
        return "dilated or index-returning max-pool is not supported"
    if isinstance(module, nn.AvgPool2d) and module.divisor_override is not None:
        return "AvgPool2d with divisor_override is not supported"
    roundings = {
        _rounding_like(k, s, p, ceil_mode) for k, s, p in zip(kernel, stride, pad, strict=True)
    }
    if len(roundings) != 1 or None in roundings:
        geometry = f"kernel {kernel}, stride {stride}, padding {pad}"
        return f"its output size ({geometry}) is neither ceil(H/s) nor floor(H/s)"
    rounding = roundings.pop()
    if isinstance(module, nn.MaxPool2d):
        return operator.dense_pool("max", None, kernel, stride, padding, rounding)
    if avgpool == "replace" and kernel == stride and pad == (0, 0):
        return operator.pool(None, stride, padding, rounding)
    return operator.dense_pool("avg", None, kernel, stride, padding, rounding)


def _rounding_like(kernel: int, stride: int, pad: int, ceil_mode: bool) -> str | None:
    """Which of ceil(H/s) and floor(H/s) reproduces a pool's output size for every H."""
    sizes = range(max(1, kernel - 2 * pad), 8 * stride * kernel)
    torch_sizes = [_pool_output_size(n, kernel, stride, pad, ceil_mode) for n in sizes]
    for name, rule in (
        ("ceil", lambda n: -(-n // stride)),
        ("floor", lambda n: max(1, n // stride)),
    ):
        if all(rule(n) == t for n, t in zip(sizes, torch_sizes, strict=True)):
            return name
    return None


def _pool_output_size(n: int, kernel: int, stride: int, pad: int, ceil_mode: bool) -> int:
    """PyTorch's pooling output size (``pooling_output_shape`` in ATen)."""
    span = n + 2 * pad - (kernel - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = span // stride + 1
    if ceil_mode and (out - 1) * stride >= n + pad:
        out -= 1
    return out


def _is_downsampling(module: nn.Module) -> bool:
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, *BLUR_TYPES)):
        stride = module.stride if module.stride is not None else module.kernel_size
        return _pair(stride) != (1, 1)
    return False


def _all_circular(model: nn.Module) -> bool:
    padded = [m for m in model.modules() if isinstance(m, nn.Conv2d) and _padding(m) != (0, 0)]
    return bool(padded) and all(m.padding_mode == "circular" for m in padded)


def _padding(module: nn.Module) -> tuple[int, int]:
    padding = module.padding
    if isinstance(padding, str):
        return (0, 0) if padding == "valid" else (-1, -1)
    return _pair(padding)


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _short(module: nn.Module) -> str:
    if isinstance(module, BlurConv2d):
        return f"{type(module).__name__}(stride={module.stride}, {_operator(module.blur)})"
    if isinstance(module, BLUR_TYPES):
        return f"{type(module).__name__}({_operator(module)})"
    if isinstance(module, nn.Conv2d):
        return f"Conv2d(stride={module.stride}, padding_mode={module.padding_mode})"
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        return f"{type(module).__name__}({module.kernel_size}, stride={module.stride})"
    return type(module).__name__


def _operator(layer: nn.Module) -> str:
    """A blur layer's arguments, as a report shows them: ``binomial-5, circular``."""
    if isinstance(layer, IDEAL_TYPES):
        return f"cutoff={layer.cutoff:g}"
    if isinstance(layer, CONTENT_AWARE_TYPES):
        return f"taps={layer.predictor.taps}, groups={layer.predictor.groups}, {layer.padding}"
    norm = f", norm={layer.norm}" if isinstance(layer, APS_TYPES) else ""
    return f"{layer.spec}, {layer.padding}{norm}"


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def _announce(report: ConversionReport, what: str, log_it: bool) -> None:
    if log_it:
        logger.info("%s: %s", what, report)
    if not report.replaced:
        warnings.warn(
            f"{what}: replaced nothing in this model ({len(report.skipped)} layers left alone)",
            NothingConvertedWarning,
            stacklevel=3,
        )
