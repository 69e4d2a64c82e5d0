"""Prompt parsing for T2I-CompBench: noun phrases, nouns and adjectives, without downloading a model.

The official evaluators run spaCy ``en_core_web_sm`` 3.5.0 (reference §2, §3.1, §4): ``doc.noun_chunks`` for the
BLIP-VQA questions, tokens tagged ``NOUN``/``PROPN`` for the detector's objects, tokens tagged ``ADJ`` removed for the
complex category's CLIP text. That model is not on PyPI, so the default here is :class:`RuleParser`, a small
lexicon + position tagger written for the benchmark's prompt grammar (``<det> <modifiers> <noun>`` phrases joined by
prepositions, conjunctions and verbs). It reproduces spaCy's chunks on the simple attribute prompts (``a green bench
and a blue bowl``) and approximates it on free-form sentences (tests pin both on the real prompt files).
:class:`SpacyParser` is the official tagger for users who install it (``pip install spacy==3.5.3`` and the
``en_core_web_sm-3.5.0`` wheel from spaCy's model releases); both have the same interface, chosen by ``_target_``.

Both parsers give tokens with a coarse universal POS tag: DET, NUM, ADJ, NOUN, VERB, AUX, ADP, CCONJ, PRON, ADV,
PART, PUNCT.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol, Sequence

__all__ = ["NounPhraseParser", "RuleParser", "SpacyParser", "Token"]


@dataclass(frozen=True)
class Token:
    text: str
    pos: str
    start: int  # character offsets in the parsed text
    end: int


class NounPhraseParser(Protocol):
    def tokens(self, text: str) -> list[Token]: ...

    def noun_chunks(self, text: str) -> list[str]: ...


# ------------------------------------------------------------------------------------------------ lexicon
def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


DET = _words("a an the this that these those each every some any many several few no another all both")
POSS = _words("my your his her its our their")  # spaCy tags them PRON, but they open a noun chunk like a determiner
PRON = _words("it they he she we i you them him us me something someone everything everyone nothing itself")
NUM = _words("one two three four five six seven eight nine ten eleven twelve dozen hundred thousand")
ADP = _words(
    "of on in at from with by near into onto over under above below behind beside besides between among across "
    "through against along alongside around upon within without inside outside atop beneath underneath toward "
    "towards for about after before during like past than via amid throughout"
)
CCONJ = _words("and or but nor")
AUX = _words("is are was were be been being am has have had do does did can could will would shall should may might")
ADV = _words(
    "very so too also not there here then now just only even still really quite rather almost nearly next up down "
    "off out away back together apart while where when both either"
)
# Adjectives spaCy tags ADJ in the benchmark's attribute vocabulary (colours, shapes, textures, sizes, qualities).
ADJ = _words(
    "red green blue yellow black white brown pink purple orange gray grey silver gold golden beige tan teal violet "
    "turquoise maroon navy cyan magenta ivory crimson bright dark light pale colorful colourful multicolored "
    "round square rectangular triangular circular oval oblong spherical cubic cylindrical conical pyramidal "
    "hexagonal pentagonal octagonal angular curved flat pointed tall short long wide narrow big small large tiny "
    "huge little giant thick thin high low deep shallow heavy metallic wooden fluffy soft hard smooth rough shiny "
    "glossy matte furry fuzzy silky velvety woolen woollen leathery plastic rubbery glassy crystal transparent "
    "translucent opaque striped spotted dotted checkered plaid sharp dull warm cold cool hot icy wet dry fresh old "
    "new young ancient modern vintage sleek elegant beautiful pretty ugly cute happy sad angry calm quiet loud "
    "sweet sour juicy crispy crunchy creamy delicious tasty ripe rotten broken frozen molten wooden sturdy fragile "
    "delicate bold vibrant vivid lush rich earthy rocky jagged towering majestic powerful gentle tired eager "
    "curious brave brilliant natural modern artistic unique dynamic intricate prickly slushy fierce wild tame "
    "empty full open closed clean dirty busy lazy ready other same different whole several perfect dim"
    " necessary able proud alone asleep awake alive"
)
NOT_ADJ = _words("metal animal crystal pedal signal coral kitchen chicken garden oven linen body toy sky key city")
# Verbs seen in the prompt files and their inflections (a word after a noun that is one of these ends the phrase).
_VERB_BASES = (
    "sit stand lie lay hang fly run spin shine sleep fall hold wear eat drink swim sing ride drive grow break "
    "build catch stick strike throw take give make go come read flash rest jot pound mix lean drape cover contrast "
    "adorn brighten cradle nestle suspend float flow tick graze claw loom rustle stride soar burst undulate create "
    "reach bend nibble weather skip perch play hold wait walk chase jump climb carry pull push kick bake pour slice "
    "paint draw write dance talk speak smile laugh cry help wash clean fix dig feed hug kiss wave touch grab lift "
    "chew lick bite sniff bark purr roar fill wrap tie hide glow sparkle twinkle reflect cast hover dangle drift "
    "sway bloom melt freeze boil burn blow fan sizzle sail leap quack buzz entertain cook gather attract pick pass "
    "decorate clutter complete seat share unload rise sit sip look watch gaze stare peek bounce roll slide glide "
    "rest sits lies lays"
)
_IRREGULAR = _words(
    "sat stood lay lain laid hung flew flown ran spun shone slept fell fallen held wore worn ate eaten drank swam "
    "sang rode drove grew grown broke built caught stuck struck threw thrown took taken gave given made went came "
    "read cut spread leapt rose strode burst dug fed hid cast blew froze"
)


def _inflections(base: str) -> set[str]:
    forms = {base, base + "s", base + "es"}
    stem = base[:-1] if base.endswith("e") else base
    forms |= {stem + "ed", stem + "ing", base + "d"}
    if base.endswith("y") and base[-2:-1] not in "aeiou":
        forms |= {base[:-1] + "ies", base[:-1] + "ied"}
    if len(base) >= 3 and base[-1] not in "aeiouwxy" and base[-2] in "aeiou" and base[-3] not in "aeiou":
        forms |= {base + base[-1] + "ed", base + base[-1] + "ing"}  # jot -> jotted, skip -> skipping
    return forms


VERB = frozenset(set().union(*(_inflections(b) for b in _VERB_BASES.split())) | _IRREGULAR)
_TOKEN = re.compile(r"'s\b|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*|[^\sA-Za-z0-9]")
_ADJ_SUFFIXES = ("ful", "ous", "ive", "ic", "ical", "ish", "less", "ular", "y", "ed")


def _adjective_like(word: str) -> bool:
    """Lexicon adjective, or a modifier with an adjective suffix (``fluffy``, ``striped``, ``conical``)."""
    w = word.lower()
    if w in ADJ:
        return True
    if w in NOT_ADJ or len(w) < 4:
        return False
    return w.endswith(_ADJ_SUFFIXES) or (w.endswith("al") and len(w) > 5)


_ADV_SUFFIXES = ("ally", "ily", "fully", "ously", "ively", "ently", "antly", "edly", "ingly", "ately", "lessly")
_LY_NOUNS = _words("butterfly dragonfly firefly fly family lily jelly belly holly bully ally rally assembly supply")


def _adverb_like(w: str) -> bool:
    """``-ly`` adverbs (``gracefully``, ``ominously``, ``slowly``), not ``-ly`` nouns (``butterfly``, ``lily``)."""
    if not w.endswith("ly") or w in _LY_NOUNS or w in ADJ:
        return False
    return w[:-2] in ADJ or w.endswith(_ADV_SUFFIXES) or w[:-2] in ("slow", "quick", "quiet", "soft", "near", "most")


# ------------------------------------------------------------------------------------------------ rule parser
class RuleParser:
    """Lexicon + position tagger and base-noun-phrase chunker (see the module docstring).

    A phrase opens at a determiner / possessive / number or at a content word after a preposition, conjunction,
    verb or the sentence start; it runs over content words (and over ``and`` / ``,`` between adjectives, and a
    possessive ``'s``) until a function word or a verb-like word after a noun. Its last word is the NOUN head; the
    words before it are ADJ when adjective-like, else NOUN (compounds: ``coat`` in ``coat rack``). A phrase without
    a determiner whose head is an adjective (``stood tall``) is predicative: ADJ, no chunk.
    """

    def tokens(self, text: str) -> list[Token]:
        raw = [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]
        tags = [self._base_tag(word, i, raw) for i, (word, _, _) in enumerate(raw)]
        for span in self._spans(raw, tags):
            self._tag_span(raw, tags, span)
        return [Token(word, tag, start, end) for (word, start, end), tag in zip(raw, tags)]

    def noun_chunks(self, text: str) -> list[str]:
        raw = [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]
        tags = [self._base_tag(word, i, raw) for i, (word, _, _) in enumerate(raw)]
        chunks = []
        for span in self._spans(raw, tags):
            if self._tag_span(raw, tags, span):
                chunks.append(text[raw[span[0]][1] : raw[span[-1]][2]])
        return chunks

    @staticmethod
    def _base_tag(word: str, i: int, raw: Sequence[tuple[str, int, int]]) -> str:
        w = word.lower()
        if not word[0].isalnum():
            return "PART" if w == "'s" else "PUNCT"
        if w.isdigit() or w in NUM:
            return "NUM"
        for tag, words in (("DET", DET), ("DET", POSS), ("PRON", PRON), ("CCONJ", CCONJ), ("AUX", AUX)):
            if w in words:
                return tag
        if w == "to":
            nxt = raw[i + 1][0].lower() if i + 1 < len(raw) else ""
            return "PART" if nxt in VERB else "ADP"
        if w in ADP:
            return "ADP"
        if w in ADV or _adverb_like(w):
            return "ADV"
        return "X"  # content word: decided by its phrase

    @staticmethod
    def _spans(raw, tags) -> list[list[int]]:
        """Index lists of candidate phrases (content words with their opening determiner / number)."""
        spans: list[list[int]] = []
        cur: list[int] = []
        prev_open_tag = None  # tag of the token before the current phrase
        for i, tag in enumerate(tags):
            word = raw[i][0].lower()
            content = [j for j in cur if tags[j] == "X"]
            if tag in ("DET", "NUM"):
                if cur and not content and tags[cur[-1]] in ("DET", "NUM"):
                    cur.append(i)  # "all the", "the two"
                    continue
                if cur:
                    spans.append(cur)
                cur = [i]
                continue
            if tag == "X":
                after_noun = bool(content) and tags[i - 1] == "X" and not _adjective_like(raw[i - 1][0])
                # ... and something follows it that a verb takes ("a leather watch" / "a watch and" stay nouns)
                nxt = tags[i + 1] if i + 1 < len(tags) else None
                after_noun = after_noun and nxt in ("DET", "NUM", "ADP", "ADV", "PRON", "PART", "X")
                opens_bare = not cur and prev_open_tag is not None
                if word in VERB and (after_noun or opens_bare):
                    tags[i] = "VERB"
                    if cur:
                        spans.append(cur)
                    cur, prev_open_tag = [], "VERB"
                    continue
                cur.append(i)
                continue
            if tag == "PART" and word == "'s" and content:
                cur.append(i)  # possessive: "the water's surface" is one phrase
                continue
            if (word == "and" or word == ",") and content and _adjective_like(raw[cur[-1]][0]) and i + 1 < len(tags) \
                    and tags[i + 1] == "X":
                cur.append(i)  # coordinated adjectives: "the white and yellow clock", "the tall, elegant giraffes"
                continue
            if cur:
                spans.append(cur)
            cur, prev_open_tag = [], tag
        if cur:
            spans.append(cur)
        return spans

    @staticmethod
    def _tag_span(raw, tags, span: list[int]) -> bool:
        """Tag a phrase's content words in place; True if it is a noun chunk."""
        words = [j for j in span if tags[j] == "X"]
        if not words:
            for j in span:
                if tags[j] == "DET" and raw[j][0].lower() in ("that", "this", "these", "those"):
                    tags[j] = "PRON"
            return False
        head = words[-1]
        has_det = tags[span[0]] in ("DET", "NUM")
        head_word = raw[head][0].lower()
        bare_adjective = not has_det and (head_word in ADJ or (len(words) == 1 and _adjective_like(head_word)))
        predicative = bare_adjective or head_word in ("other", "same", "different")
        for j in words:
            w = raw[j][0].lower()
            if predicative:
                tags[j] = "ADJ"
            elif j == head:
                tags[j] = "NOUN"
            elif w.endswith("ing") and w not in ADJ:
                tags[j] = "VERB"  # spaCy tags participle modifiers (flickering light) VERB, not ADJ
            else:
                tags[j] = "ADJ" if _adjective_like(w) else "NOUN"
        return not predicative


# ------------------------------------------------------------------------------------------------ spaCy parser
class SpacyParser:
    """The official tagger: spaCy with ``model`` (``en_core_web_sm`` 3.5.0 for parity), installed by the user."""

    def __init__(self, model: str = "en_core_web_sm"):
        try:
            import spacy
        except ImportError as err:
            raise ImportError(
                "SpacyParser needs spaCy: pip install spacy==3.5.3 plus the en_core_web_sm-3.5.0 wheel from spaCy's "
                "model releases (or use eval.t2i_compbench.parsing.RuleParser, the default)"
            ) from err
        self.nlp = spacy.load(model)

    def tokens(self, text: str) -> list[Token]:
        return [Token(t.text, t.pos_, t.idx, t.idx + len(t.text)) for t in self.nlp(text)]

    def noun_chunks(self, text: str) -> list[str]:
        return [chunk.text for chunk in self.nlp(text).noun_chunks]
