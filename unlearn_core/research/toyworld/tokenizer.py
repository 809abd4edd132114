"""Build a CLIP-format BPE tokenizer (vocab.json + merges.txt) for the toy world's vocabulary.

The vocabulary has every byte character (so any text tokenizes, unknown words fall back to
sub-word pieces) plus one token per caption word, reached by left-to-right merges.
`transformers.CLIPTokenizer` loads the result like any Stable Diffusion tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

from transformers import CLIPTokenizer

BOS = "<|startoftext|>"
EOS = "<|endoftext|>"
MODEL_MAX_LENGTH = 32


def _byte_characters() -> list[str]:
    """The 256 printable stand-ins that byte-level BPE (GPT-2, CLIP) uses for the bytes 0..255."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return [chars[b] for b in range(256)]


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's BPE on one lower-case ASCII word: merge the lowest-ranked adjacent pair until none applies."""
    pieces = list(word[:-1]) + [word[-1] + "</w>"]
    while len(pieces) > 1:
        pairs = [(ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(zip(pieces, pieces[1:]))]
        rank, i = min(pairs)
        if rank == 1 << 30:
            break
        pieces[i:i + 2] = [pieces[i] + pieces[i + 1]]
    return pieces


def build_tokenizer(words: set[str], out_dir: str | Path) -> CLIPTokenizer:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    byte_chars = _byte_characters()
    vocab_list = byte_chars + [c + "</w>" for c in byte_chars]
    known = set(vocab_list)
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    # Merges are applied by rank, so a word's own merges can be pre-empted by another word's;
    # repeat until every word ends as one token (new merges are appended, applied last).
    for _ in range(10):
        changed = False
        for word in sorted(words):
            pieces = _bpe(word, ranks)
            current = pieces[0]
            for nxt in pieces[1:]:
                merged = current + nxt
                ranks[(current, nxt)] = len(merges)
                merges.append((current, nxt))
                if merged not in known:
                    vocab_list.append(merged)
                    known.add(merged)
                current = merged
                changed = True
        if not changed:
            break
    vocab_list += [BOS, EOS]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    (out_dir / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    (out_dir / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "bos_token": BOS, "eos_token": EOS, "pad_token": EOS,
        "unk_token": EOS, "model_max_length": MODEL_MAX_LENGTH, "do_lower_case": True,
    }, indent=1))
    tok = CLIPTokenizer.from_pretrained(out_dir, model_max_length=MODEL_MAX_LENGTH)
    return tok
