"""Typed parameter overrides for API prompts: ``--set`` and ``--seed``.

    --set "TITLE_OR_ID.input=value"     e.g. --set "KSampler.steps=30" --set "3.cfg=6.5"
    --seed N                            every seed / noise_seed input gets N

The node is found by id, then by exact ``_meta.title``, then by class_type (each must
match exactly one node). The value is typed by the server's /object_info for that
node's input: INT and FLOAT are parsed and checked against min/max (as the server does),
BOOLEAN takes true/false/1/0/yes/no/on/off, COMBO must be one of the allowed values,
STRING is taken as is. Each mistake is a usage error (exit code 2) that names the
node, the input and what would be accepted.
"""

from __future__ import annotations

import copy
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .convert import WIDGET_TYPES
from .errors import UsageError

log = logging.getLogger("comfy_avatar.driver.params")

SEED_INPUTS = ("seed", "noise_seed")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


class ParamError(UsageError):
    """A --set / --seed that cannot apply: exit code 2."""


@dataclass(frozen=True)
class Override:
    target: str  # node id, title or class_type as typed
    input: str
    raw: str  # the value as typed
    spec: str  # the whole --set argument, for messages

    @classmethod
    def parse(cls, spec: str) -> Override:
        left, sep, raw = spec.partition("=")
        target, dot, name = left.rpartition(".")
        if not sep or not dot or not target.strip() or not name.strip():
            raise ParamError(
                f"--set {spec}",
                "must look like NODE.input=value (NODE: id or title)",
                'e.g. --set "KSampler.steps=30" or --set "3.cfg=6.5"',
            )
        return cls(target.strip(), name.strip(), raw, spec)


def find_node(prompt: dict[str, Any], target: str, what: str) -> str:
    """Node id for an id, an exact title, or a class_type (unique match required)."""
    if target in prompt:
        return target
    for label, key in (
        ("title", lambda n: (n.get("_meta") or {}).get("title")),
        ("class_type", lambda n: n.get("class_type")),
    ):
        ids = [nid for nid, n in prompt.items() if key(n) == target]
        if len(ids) == 1:
            return ids[0]
        if len(ids) > 1:
            raise ParamError(
                what, f"{target!r} matches nodes {', '.join(sorted(ids))} by {label}", "use the node id instead"
            )
    nodes = ", ".join(
        f"{nid} ({n.get('class_type')}"
        + (f", {n['_meta']['title']!r}" if (n.get("_meta") or {}).get("title") else "")
        + ")"
        for nid, n in sorted(prompt.items(), key=lambda kv: _id_key(kv[0]))
    )
    raise ParamError(what, f"no node has id, title or type {target!r}", f"use one of: {nodes}")


def _id_key(nid: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in nid.split(":"))


def input_spec(object_info: Mapping[str, Any], class_type: str, name: str) -> list | None:
    inputs = (object_info.get(class_type) or {}).get("input") or {}
    for section in ("required", "optional"):
        spec = (inputs.get(section) or {}).get(name)
        if spec is not None:
            return list(spec) if isinstance(spec, (list, tuple)) else [spec]
    return None


def _opts(spec: list) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def _kind(spec: list) -> str:
    if not spec:
        return ""
    return "COMBO" if isinstance(spec[0], list) else str(spec[0])


def combo_values(spec: list) -> list:
    if spec and isinstance(spec[0], list):
        return list(spec[0])
    return list(_opts(spec).get("options") or [])


def coerce(spec: list, raw: Any, what: str) -> Any:
    """`raw` (a string from the command line, or already typed) as the input's type."""
    kind, opts = _kind(spec), _opts(spec)
    if kind == "INT":
        value = _parse_number(raw, int, what)
        _check_range(value, opts, what)  # like ComfyUI's own validation: no step check
        return value
    if kind == "FLOAT":
        value = _parse_number(raw, float, what)
        _check_range(value, opts, what)
        return value
    if kind == "BOOLEAN":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ParamError(what, f"{raw!r} is not a boolean", "use true or false")
    if kind == "COMBO":
        values = combo_values(spec)
        if raw in values:
            return raw
        matches = [v for v in values if str(v) == str(raw)]
        if matches:
            return matches[0]
        shown = ", ".join(map(str, values[:20])) + (f", ... ({len(values)} in all)" if len(values) > 20 else "")
        raise ParamError(
            what,
            f"{raw!r} is not one of the allowed values",
            f"use one of: {shown}" if values else "the server lists no values for this input",
        )
    if kind == "STRING":
        return raw if isinstance(raw, str) else json.dumps(raw)
    # A pack-specific widget type: accept JSON when it parses, else the plain text.
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return raw


def _parse_number(raw: Any, typ: type, what: str) -> Any:
    if isinstance(raw, bool):
        raise ParamError(what, f"{raw!r} is not a number", "pass a number")
    if isinstance(raw, (int, float)):
        value: Any = raw
    else:
        text = str(raw).strip()
        try:
            value = int(text) if typ is int else float(text)
        except ValueError:
            if typ is int:
                try:
                    f = float(text)
                except ValueError:
                    f = math.nan
                if f.is_integer():
                    value = int(f)
                else:
                    raise ParamError(what, f"{raw!r} is not a whole number", "pass an integer, e.g. 30") from None
            else:
                raise ParamError(what, f"{raw!r} is not a number", "pass a number, e.g. 6.5") from None
    if typ is int:
        if isinstance(value, float):
            if not value.is_integer():
                raise ParamError(what, f"{raw!r} is not a whole number", "pass an integer, e.g. 30")
            value = int(value)
        return value
    value = float(value)
    if not math.isfinite(value):
        raise ParamError(what, f"{raw!r} is not a finite number", "pass a finite number")
    return value


def _check_range(value: float, opts: dict, what: str) -> None:
    lo, hi = opts.get("min"), opts.get("max")
    if isinstance(lo, (int, float)) and value < lo:
        raise ParamError(what, f"{value} is below the minimum {lo}", f"use a value between {lo} and {hi}")
    if isinstance(hi, (int, float)) and value > hi:
        raise ParamError(what, f"{value} is above the maximum {hi}", f"use a value between {lo} and {hi}")


def apply_overrides(
    prompt: dict[str, Any],
    overrides: Iterable[str | Override],
    object_info: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
) -> dict[str, Any]:
    """A copy of `prompt` with every --set applied (all are checked before any applies)."""
    items = [o if isinstance(o, Override) else Override.parse(o) for o in overrides]
    if not items:
        return prompt
    info = object_info() if callable(object_info) else object_info
    out = copy.deepcopy(prompt)
    for o in items:
        what = f"--set {o.spec}"
        nid = find_node(out, o.target, what)
        node = out[nid]
        spec = input_spec(info, node.get("class_type", ""), o.input)
        if spec is None:
            known = sorted(set(_all_inputs(info, node.get("class_type", ""))) | set(node.get("inputs") or {}))
            if o.input not in (node.get("inputs") or {}):
                raise ParamError(
                    what,
                    f"node {nid} ({node.get('class_type')}) has no input {o.input!r}",
                    f"use one of: {', '.join(known) or '(none)'}",
                )
            spec = ["*"]  # present in the prompt but unknown to the server: keep it untyped
        kind = _kind(spec)
        if kind not in WIDGET_TYPES and kind not in ("*", "") and not _opts(spec).get("forceInput"):
            raise ParamError(
                what,
                f"input {o.input!r} of node {nid} takes a {kind} from another node, not a value",
                "set a value input, or change the node feeding it",
            )
        current = (node.get("inputs") or {}).get(o.input)
        if isinstance(current, list) and len(current) == 2 and isinstance(current[0], str):
            log.warning("%s replaces the link from node %s", what, current[0])
        node.setdefault("inputs", {})[o.input] = coerce(spec, o.raw, what)
        log.info("%s -> node %s input %s = %r", what, nid, o.input, node["inputs"][o.input])
    return out


def _all_inputs(info: Mapping[str, Any], class_type: str) -> list[str]:
    inputs = (info.get(class_type) or {}).get("input") or {}
    return [n for s in ("required", "optional") for n in (inputs.get(s) or {})]


def apply_seed(
    prompt: dict[str, Any],
    seed: int | None,
    object_info: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """A copy of `prompt` where every seed / noise_seed input is `seed`.

    A seed fed by a link is set on the node at the other end when that node holds
    the number itself (an INT `value`/`seed`/`noise_seed` input, e.g. a primitive).
    Raises ParamError when the workflow has no seed to set or the value is out of range.
    """
    if seed is None:
        return prompt
    info = (object_info() if callable(object_info) else object_info) or {}
    out = copy.deepcopy(prompt)
    targets: list[tuple[str, str]] = []
    for nid, node in out.items():
        for name in SEED_INPUTS:
            if name not in (node.get("inputs") or {}):
                continue
            value = node["inputs"][name]
            if isinstance(value, list) and len(value) == 2 and str(value[0]) in out:
                src = out[str(value[0])]
                held = next(
                    (
                        k
                        for k in ("value", *SEED_INPUTS)
                        if not isinstance((src.get("inputs") or {}).get(k), (list, dict))
                        and k in (src.get("inputs") or {})
                    ),
                    None,
                )
                if held is not None:
                    targets.append((str(value[0]), held))
            else:
                targets.append((nid, name))
    if not targets:
        raise ParamError(
            f"--seed {seed}",
            "the workflow has no seed or noise_seed input",
            "drop --seed, or use --set NODE.input=N for the input that takes a seed",
        )
    for nid, name in dict.fromkeys(targets):
        spec = input_spec(info, out[nid].get("class_type", ""), name) or ["INT", {"min": 0, "max": 2**64 - 1}]
        out[nid]["inputs"][name] = coerce(
            spec if _kind(spec) == "INT" else ["INT", {}], seed, f"--seed {seed} (node {nid} input {name})"
        )
    return out


def apply_params(
    prompt: dict[str, Any],
    sets: Iterable[str] | None,
    seed: int | None,
    object_info: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
) -> dict[str, Any]:
    """--seed first, then --set (so an explicit --set NODE.seed=... wins)."""
    cache: dict[str, Any] = {}

    def info() -> dict[str, Any]:
        if "v" not in cache:
            cache["v"] = object_info() if callable(object_info) else object_info
        return cache["v"]

    prompt = apply_seed(prompt, seed, info)
    return apply_overrides(prompt, list(sets or []), info)
