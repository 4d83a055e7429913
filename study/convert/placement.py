"""Where a strided convolution's blur goes with ``strided_conv="after-activation"``:
each container's own ``forward`` traced one level deep with ``torch.fx``, the blur put
after the activation that follows ``conv -> [norm]`` (by wrapping the activation module,
or by rewriting the container as a ``GraphModule``), or a reason to fall back to
``"after-conv"`` (see :mod:`study.convert`)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from study.convert.report import Change, ConversionReport, short
from study.convert.tree import moved, set_submodule
from study.layers import BLUR_TYPES, BlurConv2d, Downsampling, Padding

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
class Plan:
    """Where one strided convolution's blur goes: after ``act`` in ``owner``'s forward,
    either by wrapping the activation module at ``wrap`` or by rewriting ``owner``."""

    owner: str
    act: fx.Node
    kind: str
    wrap: str | None
    why_rewrite: str = ""


def plan_after_activation(
    model: nn.Module, convs: list[str]
) -> tuple[dict[str, Plan], dict[str, str]]:
    """Plans for the convolutions followed by an activation; fallback reasons for the rest."""
    traces = _trace_containers(model)
    plans: dict[str, Plan] = {}
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


def _plan_one(model: nn.Module, name: str, traces: _Traces) -> Plan | str:
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
        return Plan(owner_path, act, kind, None, f"is functional ({_describe(act, owner)})")
    module = owner.get_submodule(act.target)
    if not traces.called_once(module):
        calls = len(traces.calls[id(module)])
        return Plan(owner_path, act, kind, None, f"module is shared (called {calls} times)")
    if module.state_dict():
        return Plan(owner_path, act, kind, None, "module has parameters or buffers")
    return Plan(owner_path, act, kind, _join(owner_path, act.target))


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


def apply_plans(
    model: nn.Module,
    plans: dict[str, Plan],
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
        before = short(conv)
        blur = operator.pool(conv.out_channels, conv.stride, padding)
        if operator.kind == "aps" and adaptive is not None:
            adaptive[name] = blur
        blur = moved(blur, conv, model)
        conv.stride = (1, 1)
        if plan.wrap is not None:
            set_submodule(model, plan.wrap, nn.Sequential(model.get_submodule(plan.wrap), blur))
            where = f"{plan.wrap}.1"
        else:
            owner = model.get_submodule(plan.owner)
            blur_name = _free_name(owner, name.rpartition(".")[2] + "_aa", rewrites[plan.owner])
            rewrites[plan.owner][blur_name] = (plan.act, blur)
            where = _join(plan.owner, blur_name)
        after = f"Conv2d(stride={conv.stride}) + {short(blur)} at {where}"
        changes[name] = Change(name, before, after, f"after-activation ({plan.kind})")
    for owner, blurs in rewrites.items():
        module = model.get_submodule(owner)
        set_submodule(model, owner, _rewritten(module, blurs))
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
