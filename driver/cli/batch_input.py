"""``batch --images DIR`` / ``--csv FILE`` -> one BatchJob per image or row.

Every job is checked here, before anything is uploaded or queued: a bad column, seed,
file or --set in any row is a usage error naming the row, so a batch never stops
half-way for a typo.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..batch import BatchJob, job_prompt_id
from ..client import safe_component
from ..errors import UsageError
from ..inputs import find_input_target, parse_input_specs
from ..params import Override, apply_params

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


@dataclass
class JobSpec:
    """What one image or CSV row asks for, before the prompt is built."""

    label: str
    params: dict[str, Any]  # recorded with the job
    sets: list[str] = field(default_factory=list)  # NODE.input=value
    seed: int | None = None
    uploads: list[tuple[str, str, Path]] = field(default_factory=list)  # (node id, input, file)
    named_files: list[tuple[str, Path]] = field(default_factory=list)  # (--input NAME, file)


def image_target(prompt: dict[str, Any], name: str | None) -> tuple[str, str]:
    """The (node, input) that takes --images: --image-input, else the node called
    "image", else the only node with an image input."""
    if name:
        return find_input_target(prompt, name)
    try:
        return find_input_target(prompt, "image")
    except UsageError:
        loaders = [nid for nid, n in prompt.items() if isinstance((n.get("inputs") or {}).get("image"), str)]
        if len(loaders) == 1:
            return loaders[0], "image"
        raise UsageError(
            "--images",
            "cannot tell which node takes the images: "
            + (f"nodes {', '.join(loaders)} all have an image input" if loaders else "no node has an image input"),
            "pass --image-input NODE (id or title, or NODE.INPUT)",
        ) from None


def image_specs(folder: Path, template: dict[str, Any], image_input: str | None) -> list[JobSpec]:
    if not folder.is_dir():
        raise UsageError(f"--images {folder}", "is not a folder", "pass a folder of images")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageError(
            f"--images {folder}",
            f"has no image files ({', '.join(sorted(IMAGE_SUFFIXES))})",
            "put the input images in that folder",
        )
    node, inp = image_target(template, image_input)
    return [JobSpec(f.stem, {"image": str(f)}, uploads=[(node, inp, f)]) for f in files]


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except FileNotFoundError:
        raise UsageError(f"--csv {path}", "file not found", "pass the path of a CSV file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise UsageError(
            f"--csv {path}", f"not a readable CSV ({e})", "save it as UTF-8 CSV with a header row"
        ) from None
    if not rows:
        raise UsageError(f"--csv {path}", "has no data rows", "add a header row and one row per job")
    for col in rows[0]:
        if col is None or not (col in ("seed", "label") or col.startswith("input:") or "." in col):
            raise UsageError(
                f"--csv {path}",
                f"column {col!r} is not NODE.input, seed, input:NAME or label",
                'name columns like "KSampler.steps", "seed", "input:image" or "label"',
            )
    return rows


def csv_specs(path: Path) -> list[JobSpec]:
    specs = []
    for n, row in enumerate(read_csv_rows(path), start=2):
        spec = JobSpec(f"row{n - 1}", {"csv": str(path), "line": n, "row": row})
        for col, cell in row.items():
            cell = (cell or "").strip()
            if not cell:
                continue
            if col == "label":
                spec.label = cell
            elif col == "seed":
                try:
                    spec.seed = int(cell)
                except ValueError:
                    raise UsageError(
                        f"--csv {path} line {n}",
                        f"seed {cell!r} is not a whole number",
                        "put an integer in the seed column",
                    ) from None
            elif col.startswith("input:"):
                fp = Path(cell).expanduser()
                fp = fp if fp.is_absolute() else path.parent / fp
                if not fp.is_file():
                    raise UsageError(f"--csv {path} line {n}", f"file {fp} does not exist", "fix the path")
                spec.named_files.append((col[6:], fp))
            else:
                spec.sets.append(f"{col}={cell}")
        specs.append(spec)
    return specs


def build_jobs(
    args: argparse.Namespace, template: dict[str, Any], object_info: Any, batch_id: str, out_root: Path
) -> list[BatchJob]:
    """Every job of the batch, prompts built (--set / --seed / CSV cells applied)."""
    common_sets = [Override.parse(s).spec for s in (args.set or [])]  # syntax errors before anything runs
    common_inputs = parse_input_specs(args.input or [])
    if args.images:
        specs = image_specs(Path(args.images).expanduser(), template, args.image_input)
    else:
        specs = csv_specs(Path(args.csv).expanduser())
    jobs = []
    for i, sp in enumerate(specs):
        seed = sp.seed if sp.seed is not None else args.seed
        sets = [*common_sets, *sp.sets]
        try:
            prompt = apply_params(template, sets, seed, object_info)
        except UsageError as e:
            raise UsageError(f"job {i} ({sp.label}): {e.what}", e.problem, e.fix) from None
        uploads = list(sp.uploads)
        for name, f in [*common_inputs, *sp.named_files]:
            nid, inp = find_input_target(prompt, name)
            uploads.append((nid, inp, f))
        jobs.append(
            BatchJob(
                index=i,
                id=f"{batch_id}-{i:04d}",
                prompt_id=job_prompt_id(batch_id, i),
                prompt=prompt,
                out_dir=out_root / f"{i:04d}-{safe_component(sp.label)[:60]}",
                label=sp.label,
                params={**sp.params, "set": sets, "seed": seed},
                uploads=uploads,
            )
        )
    return jobs
