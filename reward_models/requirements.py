"""What a prompt asks for, in T2I-R1's training-data format (t2i_r1.md §8, §9), resolved offline.

The detector and VQA rewards do not read the prompt: they read its *requirements* — the task type, the object nouns,
optional attribute phrases ("green banana"), the spatial relation ``{obj1, obj2, locality}`` and the counts
``[{obj_name, num}]``. T2I-R1 ships them precomputed with its 7,223 training prompts (JSON lines, fields
``prompt, task_type, nouns, attr_nouns?, spatial_info?, numeracy_info?``). :class:`RequirementsResolver` looks a
prompt up in such a file and, for prompts without a record, parses it with :class:`PromptParser`: plain string
rules for the GenEval templates and similar prompts ("a photo of two dogs", "a red car and a blue cup", "a X left of
a Y"), optionally bound to an object vocabulary. No model, no network.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CountInfo",
    "LOCALITIES",
    "PromptParser",
    "Requirements",
    "RequirementsResolver",
    "SpatialInfo",
    "load_requirements",
    "singular_candidates",
]

# The locality words of the official detector reward (its ``vocab_spatial``), longest first for matching.
LOCALITIES = (
    "on the bottom of", "on the right of", "on the left of", "on the top of", "on side of", "on top of",
    "right of", "left of", "next to", "below", "above", "near",
)
COLORS = (
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "gray", "grey", "gold",
    "golden", "silver", "beige", "violet", "maroon", "turquoise",
)
NUMBERS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10,
}
ARTICLES = ("a", "an", "the", "some")
PREFIXES = ("a photo of", "a picture of", "an image of", "a painting of", "a drawing of")
IRREGULAR = {
    "people": "person", "mice": "mouse", "men": "man", "women": "woman", "children": "child", "teeth": "tooth",
    "feet": "foot", "geese": "goose", "knives": "knife", "leaves": "leaf", "wolves": "wolf", "shelves": "shelf",
    "buses": "bus", "lenses": "lens", "gases": "gas", "shoes": "shoe", "toes": "toe", "canoes": "canoe",
}


@dataclass(frozen=True)
class SpatialInfo:
    """``obj1`` is ``locality`` of ``obj2`` ("a car below a zebra": obj1 car, obj2 zebra, locality below)."""

    obj1: str
    obj2: str
    locality: str


@dataclass(frozen=True)
class CountInfo:
    obj_name: str
    num: int


@dataclass(frozen=True)
class Requirements:
    """One prompt's requirements (T2I-R1 training-data fields; see the module docstring)."""

    task_type: str
    nouns: tuple[str, ...]
    attr_nouns: tuple[str, ...] | None = None
    spatial: SpatialInfo | None = None
    numeracy: tuple[CountInfo, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.task_type, str) or not self.task_type:
            raise ValueError(f"Requirements.task_type must be a non-empty string, got {self.task_type!r}")
        if self.task_type == "spatial" and self.spatial is None:
            raise ValueError(f"a spatial requirement needs spatial_info (nouns {list(self.nouns)})")
        if self.task_type == "numeracy" and not self.numeracy:
            raise ValueError(f"a numeracy requirement needs a non-empty numeracy_info (nouns {list(self.nouns)})")
        for count in self.numeracy or ():
            if not isinstance(count.num, int) or count.num < 0:
                raise ValueError(f"numeracy_info count for {count.obj_name!r} must be an int >= 0, got {count.num!r}")

    @classmethod
    def from_record(cls, record: Mapping) -> Requirements:
        """From one T2I-R1 training record (missing optional fields, or ``null``, mean absent)."""
        for key in ("task_type", "nouns"):
            if key not in record:
                raise KeyError(f"T2I-R1 record has no {key!r}: {dict(record)}")
        spatial = record.get("spatial_info")
        numeracy = record.get("numeracy_info")
        attrs = record.get("attr_nouns")
        return cls(
            task_type=record["task_type"],
            nouns=tuple(record["nouns"] or ()),
            attr_nouns=None if attrs is None else tuple(attrs),
            spatial=None if spatial is None else SpatialInfo(spatial["obj1"], spatial["obj2"], spatial["locality"]),
            numeracy=None if numeracy is None else tuple(CountInfo(c["obj_name"], int(c["num"])) for c in numeracy),
        )

    def to_record(self) -> dict:
        """The T2I-R1 fields of these requirements (optional ones only when present)."""
        out: dict = {"task_type": self.task_type, "nouns": list(self.nouns)}
        if self.attr_nouns is not None:
            out["attr_nouns"] = list(self.attr_nouns)
        if self.spatial is not None:
            out["spatial_info"] = {"obj1": self.spatial.obj1, "obj2": self.spatial.obj2, "locality": self.spatial.locality}
        if self.numeracy is not None:
            out["numeracy_info"] = [{"obj_name": c.obj_name, "num": c.num} for c in self.numeracy]
        return out


def load_requirements(path: str | Path) -> dict[str, Requirements]:
    """Prompt -> requirements from a T2I-R1-format JSON-lines file (the official ``.json`` is JSON lines)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"requirements file not found: {path}")
    table: dict[str, Requirements] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            requirements = Requirements.from_record(record)
            prompt = record["prompt"]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}:{number}: not a T2I-R1 record ({error})") from error
        if table.get(prompt, requirements) != requirements:
            raise ValueError(f"{path}:{number}: prompt {prompt!r} appears twice with different requirements")
        table[prompt] = requirements
    return table


def singular_candidates(word: str) -> list[str]:
    """Possible singular forms of an English plural, most likely first (the word itself comes last)."""
    out = []
    if word in IRREGULAR:
        out.append(IRREGULAR[word])
    if word.endswith("ies") and len(word) > 3:
        out.append(word[:-3] + "y")
    # "eses" is T2I-R1's plural of a plural noun ("gloveses", "headphoneses"); "oes": "tomatoes", "potatoes".
    if word.endswith(("sses", "shes", "ches", "xes", "zes", "eses", "oes")):
        out.append(word[:-2])
    if word.endswith("s") and not word.endswith("ss"):
        out.append(word[:-1])  # "gloves", "horses", "vases", and GenEval's "benchs"
    if word.endswith("ves"):
        out += [word[:-3] + "f", word[:-3] + "fe"]
    if word.endswith("ses"):
        out.append(word[:-2])
    out.append(word)
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class _Phrase:
    count: int | None  # explicit number word, None for an article or nothing
    attributes: tuple[str, ...]
    noun: str


class PromptParser:
    """Rule-based prompt -> :class:`Requirements` for GenEval-style prompts (offline, deterministic).

    A prompt is lower-cased, stripped of a leading "a photo of" and split at a locality word (spatial) or at "and"
    / commas into object phrases ``[article | number] [attributes] noun``. Task type: ``spatial`` with a locality,
    ``numeracy`` with an explicit number, ``color`` with colour attributes, else ``object``.

    Args:
        vocabulary: object names; when given every noun must be one of them (plurals are matched through
            :func:`singular_candidates`, e.g. "benchs", "buses", "knives"), otherwise the prompt is not parsed.
        attributes: attribute words besides colours kept in ``attr_nouns`` ("wooden", "fluffy", ...).
    """

    def __init__(self, vocabulary: Sequence[str] | None = None, attributes: Sequence[str] = ()) -> None:
        self.vocabulary = None if vocabulary is None else {v.strip().lower() for v in vocabulary if v.strip()}
        self.attributes = set(COLORS) | {a.lower() for a in attributes}

    def __call__(self, prompt: str) -> Requirements | None:
        """The requirements of ``prompt``, or ``None`` when the rules do not apply."""
        text = re.sub(r"\s+", " ", prompt.lower()).strip().rstrip(".").strip()
        for prefix in PREFIXES:
            if text.startswith(prefix + " "):
                text = text[len(prefix) + 1 :]
                break
        for locality in LOCALITIES:
            left, sep, right = text.partition(f" {locality} ")
            if sep:
                first, second = self._phrase(left), self._phrase(right)
                if first is None or second is None:
                    return None
                spatial = SpatialInfo(first.noun, second.noun, locality)
                return Requirements("spatial", (first.noun, second.noun), spatial=spatial)
        phrases = [self._phrase(part) for part in re.split(r",? and |, ", text) if part.strip()]
        if not phrases or any(p is None for p in phrases):
            return None
        nouns = tuple(p.noun for p in phrases)
        if any(p.count is not None for p in phrases):
            counts = tuple(CountInfo(p.noun, 1 if p.count is None else p.count) for p in phrases)
            return Requirements("numeracy", nouns, numeracy=counts)
        if any(p.attributes for p in phrases):
            attr_nouns = tuple(" ".join((*p.attributes, p.noun)) for p in phrases)
            task = "color" if any(a in COLORS for p in phrases for a in p.attributes) else "object"
            return Requirements(task, nouns, attr_nouns=attr_nouns)
        return Requirements("object", nouns)

    def _phrase(self, text: str) -> _Phrase | None:
        words = text.strip().split(" ")
        count = None
        if words and (words[0] in NUMBERS or words[0].isdigit()):
            count = NUMBERS.get(words[0]) or int(words[0])
            words = words[1:]
        elif words and words[0] in ARTICLES:
            words = words[1:]
        attributes = []
        while len(words) > 1 and words[0] in self.attributes:
            attributes.append(words.pop(0))
        if not words or not all(re.fullmatch(r"[a-z][a-z'-]*", w) for w in words):
            return None
        noun = self._noun(words, plural=count is not None and count != 1)
        return None if noun is None else _Phrase(count, tuple(attributes), noun)

    def _noun(self, words: list[str], plural: bool) -> str | None:
        head, last = words[:-1], words[-1]
        candidates = singular_candidates(last) if plural else [last]
        forms = [" ".join((*head, c)) for c in candidates]
        if self.vocabulary is None:
            return forms[0]
        if not plural:  # a singular noun may still be written as a known plural ("skis", "scissors")
            forms += [" ".join((*head, c)) for c in singular_candidates(last)]
        return next((f for f in forms if f in self.vocabulary), None)


class RequirementsResolver:
    """Prompt -> :class:`Requirements`: the records file first, then the :class:`PromptParser` rules.

    Args:
        records: a T2I-R1-format JSON-lines file (e.g. ``geneval_and_t2i_data_final.json``), or ``None``.
        vocabulary: object names for the parser, as a list or a text file with one name per line.
        parse: parse prompts that have no record (``False``: a prompt without a record is an error).
        attributes: extra attribute words for the parser.
    """

    def __init__(
        self,
        records: str | Path | None = None,
        vocabulary: Sequence[str] | str | Path | None = None,
        parse: bool = True,
        attributes: Sequence[str] = (),
    ) -> None:
        self.table = {} if records is None else load_requirements(records)
        if isinstance(vocabulary, (str, Path)):
            path = Path(vocabulary).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"vocabulary file not found: {path}")
            vocabulary = path.read_text().splitlines()
        self.parser = PromptParser(vocabulary, attributes) if parse else None

    def __call__(self, prompt: str) -> Requirements:
        if prompt in self.table:
            return self.table[prompt]
        parsed = None if self.parser is None else self.parser(prompt)
        if parsed is None:
            raise ValueError(
                f"no requirements for prompt {prompt!r}: it has no record in the requirements file "
                f"({len(self.table)} records) and the prompt parser "
                f"{'is off' if self.parser is None else 'does not recognise it'}; add a T2I-R1 record for it"
            )
        return parsed

    def resolve(self, prompts: Sequence[str], requirements: Sequence[Requirements] | None = None) -> list[Requirements]:
        """Requirements of each prompt; explicit ``requirements`` (one per prompt) win over lookup and parsing."""
        if requirements is None:
            return [self(p) for p in prompts]
        if len(requirements) != len(prompts):
            raise ValueError(f"got {len(requirements)} requirements for {len(prompts)} prompts")
        return list(requirements)
