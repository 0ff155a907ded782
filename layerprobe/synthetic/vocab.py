"""A small token vocabulary for models trained from scratch on synthetic worlds.

A 50k BPE vocabulary would make the embedding and softmax dominate a CPU-sized model, so each
world brings its own tokens (grammar terminals, characters, or whole words) and this class maps
them to ids. Ids 0, 1, 2 are always <pad>, <bos>, <eos>, so padding never collides with data.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from layerprobe.errors import DataError
from layerprobe.results import atomic_write_text


class Vocab:
    """Token <-> id map; `Vocab(tokens)` keeps the first occurrence order after the specials."""

    PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
    pad_id, bos_id, eos_id = 0, 1, 2

    def __init__(self, tokens: Iterable[str]):
        self.tokens: list[str] = [self.PAD, self.BOS, self.EOS]
        self.ids: dict[str, int] = {token: i for i, token in enumerate(self.tokens)}
        for token in tokens:
            if token not in self.ids:
                self.ids[token] = len(self.tokens)
                self.tokens.append(token)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self.ids

    def encode(self, tokens: Sequence[str], bos: bool = False, eos: bool = False) -> list[int]:
        """Ids of a token sequence (a str is a sequence of characters); unknown tokens raise KeyError."""
        try:
            body = [self.ids[token] for token in tokens]
        except KeyError as error:
            raise KeyError(f"token {error.args[0]!r} is not in the vocabulary") from None
        return [self.bos_id] * bos + body + [self.eos_id] * eos

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> list[str]:
        """Tokens of an id sequence; specials are dropped unless `skip_special=False`."""
        tokens = [self.tokens[int(i)] for i in ids]
        if skip_special:
            tokens = [token for token in tokens if token not in (self.PAD, self.BOS, self.EOS)]
        return tokens

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps({"tokens": self.tokens}, ensure_ascii=False, indent=0))

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        try:
            tokens = json.loads(Path(path).read_text(encoding="utf-8"))["tokens"]
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DataError(path, f"not a vocabulary file ({type(error).__name__}: {error})") from None
        if tokens[:3] != [cls.PAD, cls.BOS, cls.EOS]:
            raise DataError(path, "the first three tokens must be <pad>, <bos>, <eos>", field="tokens")
        return cls(tokens[3:])
