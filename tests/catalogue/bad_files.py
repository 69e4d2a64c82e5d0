"""Bad input files for the catalogue (not a test module): each maker writes one damaged copy of a world input under
``tmp`` (the test's own folder) and the catalogue's overrides point a recipe at it."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from tests.catalogue.world import World

LATIN1 = "a r\xe9d circle\n".encode("latin-1")  # "é" in Latin-1: not UTF-8


def text_files(w: World, tmp: Path) -> None:
    """Prompt files: empty, blank lines only, Latin-1."""
    (tmp / "empty.txt").write_text("")
    (tmp / "blank.txt").write_text("  \n\n \n")
    (tmp / "latin1.txt").write_bytes(LATIN1)


def metadata_files(w: World, tmp: Path) -> None:
    """GenEval metadata: a malformed JSON line, an unknown class, an empty line, Latin-1 bytes."""
    good = w.metadata.read_text().splitlines()
    (tmp / "malformed.jsonl").write_text(good[0] + "\n" + '{"tag": "single_object", "prompt": \n')
    line = json.loads(good[0])
    line["include"][0]["class"] = "unicorn"
    (tmp / "unknown_class.jsonl").write_text(good[0] + "\n" + json.dumps(line) + "\n")
    (tmp / "empty_line.jsonl").write_text(good[0] + "\n\n" + good[1] + "\n")
    latin1 = good[1].replace("a photo", "\xe9t\xe9").encode("latin-1")
    (tmp / "latin1.jsonl").write_bytes(good[0].encode() + b"\n" + latin1)


def _bundle(w: World, tmp: Path, name: str) -> Path:
    out = tmp / name
    shutil.copytree(w.bundle, out)
    return out


def _set_tensor(path: Path, value: float) -> str:
    """Write ``value`` into the first floating-point tensor (by name) of a safetensors file; returns its name."""
    tensors = load_file(str(path))
    name = sorted(k for k, t in tensors.items() if t.is_floating_point())[0]
    tensors[name][...] = value
    save_file(tensors, str(path), metadata={"format": "pt"})
    return name


def bundles(w: World, tmp: Path) -> None:
    """Damaged Show-o bundles: no vq/, no tokenizer/, truncated / garbage weights, NaN / inf weights, bad config."""
    shutil.rmtree(_bundle(w, tmp, "novq") / "vq")
    shutil.rmtree(_bundle(w, tmp, "notok") / "tokenizer")
    weights = _bundle(w, tmp, "truncated") / "showo" / "pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    (_bundle(w, tmp, "garbage_vq") / "vq" / "pytorch_model.safetensors").write_bytes(b"not a tensor file" * 8)
    (tmp / "nan_name.txt").write_text(_set_tensor(_bundle(w, tmp, "nan") / "showo" / "pytorch_model.safetensors",
                                                  float("nan")))
    (tmp / "inf_name.txt").write_text(_set_tensor(_bundle(w, tmp, "inf_vq") / "vq" / "pytorch_model.safetensors",
                                                  float("inf")))
    (_bundle(w, tmp, "badcfg") / "showo" / "config.json").write_text("{not json")


def datasets(w: World, tmp: Path) -> None:
    """Tokenized t2i datasets: a malformed prompts.jsonl line, garbage codes."""
    bad_line = tmp / "bad_line"
    shutil.copytree(w.t2i, bad_line)
    lines = (bad_line / "prompts.jsonl").read_text().splitlines()
    lines[2] = '{"text": "a red square"}'
    (bad_line / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    bad_codes = tmp / "bad_codes"
    shutil.copytree(w.t2i, bad_codes)
    (bad_codes / "codes.safetensors").write_bytes(b"\x00" * 64)


def pairs(w: World, tmp: Path) -> None:
    """DPO pairs: a malformed line, no pairs, Latin-1 bytes, an image code outside the codebook."""
    good = w.pairs.read_text().splitlines()
    (tmp / "malformed.jsonl").write_text(good[0] + "\n{chosen: [1, 2\n")
    (tmp / "empty.jsonl").write_text("\n")
    (tmp / "latin1.jsonl").write_bytes(good[0].encode() + b"\n" + good[1].replace("a ", "\xe0 ", 1).encode("latin-1"))
    record = json.loads(good[0])
    record["chosen"][3] = 100000
    (tmp / "out_of_range.jsonl").write_text(json.dumps(record) + "\n" + "\n".join(good[1:]) + "\n")


def image_folders(w: World, tmp: Path) -> None:
    """GenEval image folders: a folder holding another prompt's metadata, a missing sample, a folder beyond the
    benchmark, a folder without metadata.jsonl."""
    def copy(name: str) -> Path:
        out = tmp / name
        shutil.copytree(w.images, out)
        return out

    shifted = copy("shifted")
    (shifted / "00001" / "metadata.jsonl").write_text((shifted / "00000" / "metadata.jsonl").read_text())
    (copy("missing_sample") / "00001" / "samples" / "0001.png").unlink()
    extra = copy("extra_folder")
    shutil.copytree(extra / "00000", extra / "00099")
    (copy("no_metadata") / "00002" / "metadata.jsonl").unlink()


MAKERS = {f.__name__: f for f in (text_files, metadata_files, bundles, datasets, pairs, image_folders)}
