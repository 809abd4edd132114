"""The adapter protocols (unlearn_core/protocol.py) are complete and implemented: every member a
trainer uses is declared, and every adapter provides every declared member with a compatible
signature. (`runtime_checkable` isinstance checks only compare names; these compare signatures.)"""

import ast
import inspect
import re
import typing
from pathlib import Path

import torch

from unlearn_core.protocol import PLACEHOLDER, DenoiserAdapter, TextEncoderAdapter

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "unlearn_core"


def protocol_members(proto) -> dict[str, str]:
    """name -> 'attribute', 'property' or 'method' for every public member the Protocol declares."""
    members = {name: "attribute" for name in typing.get_type_hints(proto)}
    for name, value in vars(proto).items():
        if name.startswith("_"):
            continue
        members[name] = "property" if isinstance(value, property) else "method" if callable(value) else "attribute"
    return members


def _check_signature(proto, impl, name: str) -> None:
    expected = inspect.signature(getattr(proto, name))
    got = inspect.signature(getattr(impl, name))
    params = list(got.parameters.values())
    for p in list(expected.parameters.values())[1:]:  # without self
        match = got.parameters.get(p.name)
        assert match is not None, f"{type(impl).__name__}.{name} lacks parameter {p.name!r}"
        assert match.kind in (p.kind, inspect.Parameter.POSITIONAL_OR_KEYWORD), f"{name}({p.name})"
        if p.default is not inspect.Parameter.empty:
            assert match.default is not inspect.Parameter.empty, \
                f"{type(impl).__name__}.{name}({p.name}) has no default"
        if match.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD:
            assert params.index(match) == list(expected.parameters).index(p.name) - 1, \
                f"{type(impl).__name__}.{name}: {p.name!r} is not in the protocol's position"
    extra = [q for q in params if q.name not in expected.parameters and q.default is inspect.Parameter.empty
             and q.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)]
    assert extra == [], f"{type(impl).__name__}.{name} requires parameters the protocol does not pass: {extra}"


def assert_implements(proto, impl) -> None:
    hints = typing.get_type_hints(proto)
    for name, kind in protocol_members(proto).items():
        assert hasattr(impl, name), f"{type(impl).__name__} lacks {proto.__name__}.{name}"
        value = getattr(impl, name)
        if kind == "method":
            assert callable(value), name
            _check_signature(proto, impl, name)
        elif kind == "property":
            ret = typing.get_type_hints(getattr(proto, name).fget).get("return")
            if ret in (int, str):
                assert isinstance(value, ret), f"{name}: {value!r}"
        else:
            hint = typing.get_origin(hints[name]) or hints[name]
            assert isinstance(value, hint), f"{type(impl).__name__}.{name} is {type(value).__name__}, not {hint}"


def test_protocol_members_are_what_the_trainers_need():
    assert set(protocol_members(DenoiserAdapter)) == {
        "prediction_type", "num_train_timesteps", "latent_shape", "device", "dtype", "image_size", "encode_prompts",
        "prompt_token_ids", "token_embeddings", "predict_noise", "add_noise", "denoiser_weights", "module_types",
        "sample_latents", "encode_images", "decode_latents", "unet"}
    assert set(protocol_members(TextEncoderAdapter)) == {
        "clip_skip", "used_layer", "token_embedding", "weights", "final_layer_names", "layer_names", "encode",
        "word_embedding"}


# Which argument of each function is which adapter (the trainers and the attacks).
_ADAPTER_ARGS = {"adapter": DenoiserAdapter, "unet_adapter": DenoiserAdapter, "text": TextEncoderAdapter}
# module -> the names its adapters go by (`text` is a plain string in closed_form)
_USERS = {"unet_unlearning.py": ("adapter",), "training_data.py": ("adapter",),
          "text_encoder_unlearning.py": ("unet_adapter", "text"), "closed_form.py": ("adapter",),
          "research/attacks.py": ("adapter", "text")}


def _uses(path: Path) -> dict[str, set[str]]:
    """Adapter argument name -> the attributes the module reads on it (also as `self.adapter`)."""
    used: dict[str, set[str]] = {k: set() for k in _USERS[path.relative_to(CORE).as_posix()]}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute):
            base = node.value
            if isinstance(base, ast.Attribute) and isinstance(base.value, ast.Name) and base.value.id == "self":
                base = ast.Name(id=base.attr)
            if isinstance(base, ast.Name) and base.id in used:
                used[base.id].add(node.attr)
    return used


def test_every_member_the_trainers_and_attacks_use_is_declared():
    for rel in _USERS:
        for arg, attrs in _uses(CORE / rel).items():
            missing = attrs - set(protocol_members(_ADAPTER_ARGS[arg]))
            assert missing == set(), f"{rel}: {arg}.{sorted(missing)} not in {_ADAPTER_ARGS[arg].__name__}"


def test_trainers_are_typed_against_the_protocols_only():
    """No concrete adapter in annotations, and the trainers do not import the adapters at all."""
    concrete = re.compile(r"\b(DiffusersAdapter|ClipTextAdapter|ComfyDenoiserAdapter|ComfyClipTextAdapter)\b")
    for rel in _USERS:
        tree = ast.parse((CORE / rel).read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for a in node.args.args + node.args.kwonlyargs:
                    if a.annotation is not None:
                        assert not concrete.search(ast.unparse(a.annotation)), f"{rel}:{node.lineno} {a.arg}"
                    if a.arg in _USERS[rel]:
                        want = _ADAPTER_ARGS[a.arg].__name__
                        assert a.annotation is not None and want in ast.unparse(a.annotation), \
                            f"{rel}:{node.lineno} {node.name}({a.arg}) is not typed {want}"
            if rel != "research/attacks.py" and isinstance(node, ast.ImportFrom):
                assert "adapters" not in (node.module or ""), f"{rel}:{node.lineno} imports {node.module}"


def test_diffusers_adapter_implements_the_denoiser_protocol(adapter):
    assert_implements(DenoiserAdapter, adapter)
    assert adapter.image_size > 0 and len(adapter.latent_shape) == 3


def test_clip_text_adapter_implements_the_text_encoder_protocol(toy_pipe):
    from unlearn_core.adapters.clip_text_adapter import ClipTextAdapter

    text = ClipTextAdapter(toy_pipe.tokenizer, toy_pipe.text_encoder)
    assert_implements(TextEncoderAdapter, text)
    assert isinstance(text.token_embedding.weight, torch.Tensor) and text.token_embedding.weight.ndim == 2
    assert toy_pipe.tokenizer(PLACEHOLDER, add_special_tokens=False).input_ids == [text.placeholder_id]


def _class_members(path: Path, name: str) -> set[str]:
    """Methods, properties and `self.x = ...` attributes of a class, read from its source."""
    cls = next(n for n in ast.parse(path.read_text()).body if isinstance(n, ast.ClassDef) and n.name == name)
    members = set()
    for node in cls.body:
        if isinstance(node, ast.FunctionDef):
            members.add(node.name)
            for sub in ast.walk(node):
                if isinstance(sub, (ast.Assign, ast.AnnAssign)):
                    targets = sub.targets if isinstance(sub, ast.Assign) else [sub.target]
                    for t in targets:
                        for el in (t.elts if isinstance(t, ast.Tuple) else [t]):
                            if isinstance(el, ast.Attribute) and getattr(el.value, "id", None) == "self":
                                members.add(el.attr)
    return members


def test_comfy_adapters_define_every_protocol_member():
    """The ComfyUI adapters need ComfyUI to be built (the e2e tests run them); here: their source
    defines every member of their protocol."""
    bridge = ROOT / "nodes" / "comfy_bridge.py"
    for cls, proto in (("ComfyDenoiserAdapter", DenoiserAdapter), ("ComfyClipTextAdapter", TextEncoderAdapter)):
        missing = set(protocol_members(proto)) - _class_members(bridge, cls)
        assert missing == set(), f"{cls} lacks {sorted(missing)}"
