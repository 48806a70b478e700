"""Batch driver: --set/--seed params, batch runs against the fake ComfyUI (scheduling,
cancel, retries, faults, several servers), manifests, callbacks and the CLI."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from driver.params import ParamError, apply_overrides, apply_params, apply_seed

ROOT = Path(__file__).resolve().parents[1]
with gzip.open(ROOT / "tests" / "data" / "convert" / "object_info_core.json.gz", "rt") as _f:
    OBJECT_INFO = json.load(_f)["nodes"]

PROMPT = {
    "3": {"class_type": "KSampler", "_meta": {"title": "Sampler"},
          "inputs": {"seed": 1, "steps": 20, "cfg": 8.0, "sampler_name": "euler", "scheduler": "normal",
                     "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["6", 0],
                     "latent_image": ["5", 0]}},
    "5": {"class_type": "EmptyLatentImage", "_meta": {"title": "Size"},
          "inputs": {"width": 512, "height": 512, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "_meta": {"title": "Prompt"}, "inputs": {"text": "a cat", "clip": ["4", 1]}},
    "7": {"class_type": "CLIPTextEncode", "_meta": {"title": "Prompt"}, "inputs": {"text": "", "clip": ["4", 1]}},
    "8": {"class_type": "RandomNoise", "_meta": {"title": "Noise"}, "inputs": {"noise_seed": ["9", 0]}},
    "9": {"class_type": "PrimitiveInt", "_meta": {"title": "Int"}, "inputs": {"value": 5}},
}


# --------------------------------------------------------------------------- params


def test_set_types_values_by_object_info() -> None:
    out = apply_overrides(PROMPT, ["Sampler.steps=30", "3.cfg=6.5", "KSampler.sampler_name=dpmpp_2m",
                                   "Size.width=768", "6.text=a dog = good"], OBJECT_INFO)
    assert out["3"]["inputs"]["steps"] == 30 and isinstance(out["3"]["inputs"]["steps"], int)
    assert out["3"]["inputs"]["cfg"] == 6.5
    assert out["3"]["inputs"]["sampler_name"] == "dpmpp_2m"
    assert out["5"]["inputs"]["width"] == 768
    assert out["6"]["inputs"]["text"] == "a dog = good"
    assert PROMPT["3"]["inputs"]["steps"] == 20, "the input prompt is not modified"


@pytest.mark.parametrize("spec, message", [
    ("Sampler.steps=many", "not a whole number"),
    ("Sampler.steps=0", "below the minimum 1"),
    ("Sampler.cfg=1000", "above the maximum 100"),
    ("Sampler.sampler_name=nope", "not one of the allowed values"),
    ("Size.width=8", "below the minimum 16"),
    ("Sampler.denoise=x", "not a number"),
    ("Sampler.stepz=3", "has no input 'stepz'"),
    ("Prompt.text=x", "matches nodes 6, 7 by title"),
    ("Nobody.steps=3", "no node has id, title or type 'Nobody'"),
    ("Sampler.model=3", "takes a MODEL from another node"),
    ("steps=3", "must look like NODE.input=value"),
])
def test_set_mistakes_name_the_input_and_the_fix(spec: str, message: str) -> None:
    with pytest.raises(ParamError, match="Fix: ") as e:
        apply_overrides(PROMPT, [spec], OBJECT_INFO)
    assert message in str(e.value)
    assert spec in str(e.value)


def test_boolean_values() -> None:
    info = {"B": {"input": {"required": {"flag": ["BOOLEAN", {"default": False}]}}}}
    prompt = {"1": {"class_type": "B", "inputs": {"flag": False}}}
    assert apply_overrides(prompt, ["1.flag=yes"], info)["1"]["inputs"]["flag"] is True
    assert apply_overrides(prompt, ["1.flag=OFF"], info)["1"]["inputs"]["flag"] is False
    with pytest.raises(ParamError, match="not a boolean"):
        apply_overrides(prompt, ["1.flag=maybe"], info)


def test_seed_sets_every_seed_including_through_a_primitive() -> None:
    out = apply_seed(PROMPT, 42, OBJECT_INFO)
    assert out["3"]["inputs"]["seed"] == 42
    assert out["9"]["inputs"]["value"] == 42
    assert out["8"]["inputs"]["noise_seed"] == ["9", 0]
    with pytest.raises(ParamError, match="below the minimum"):
        apply_seed(PROMPT, -1, OBJECT_INFO)
    with pytest.raises(ParamError, match="no seed"):
        apply_seed({"5": PROMPT["5"]}, 1, OBJECT_INFO)


def test_explicit_set_wins_over_seed_and_object_info_is_fetched_once() -> None:
    calls = []

    def info():
        calls.append(1)
        return OBJECT_INFO
    out = apply_params(PROMPT, ["Sampler.seed=7"], 42, info)
    assert out["3"]["inputs"]["seed"] == 7 and out["9"]["inputs"]["value"] == 42
    assert len(calls) == 1
    assert apply_params(PROMPT, [], None, lambda: pytest.fail("not needed")) is PROMPT
