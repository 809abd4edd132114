"""Concept names in the metadata a run saves, replaced by keyed hashes when asked.

Used by everything that writes a run's metadata: `UnlearnResult.metadata` and
`TextEncoderForgetResult.metadata`, `forget.write_unlearned_folder` / `write_text_encoder_folder`
(safetensors headers, report.json, unlearn_metadata.json, learned_tokens keys), the CLI
(`concept-unlearn forget --hash-concept-names`) and the node pack's Save Unlearned Model.

The hash (choice made here): HMAC-SHA256 of the normalised name (stripped, lowercased) under a
random 32-byte key drawn for each saved run (`new_key`) and stored nowhere, shown as
'hmac-sha256:' + its first 16 hex digits.
- A plain hash of a name (what this replaced: SHA-256 of the lowercased name) is reversed by
  hashing a list of candidate names (celebrities, artists, characters); without the key, a keyed
  hash cannot be checked against any candidate, so the names cannot be recovered, not even by the
  person who made the file.
- Within one run's files the key is the same, so a name has one hash everywhere (how many
  concepts, and which rows of the statistics belong to which, stays visible); runs use unrelated
  keys, so hashes cannot be linked across files either.
- Callers may pass a key of their own (`key=`) to hash several writes alike; the library, the CLI
  and the nodes never keep one.
What is redacted: each concept's name (superclasses stay readable: they are what the concepts
turned into); retain prompts are dropped (they often name related people or styles), leaving
their count; the 'concept' of per-step statistics rows and any mention of a name in the free-text
notes are replaced by the name's hash.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import re
import secrets

HASH_PREFIX = "hmac-sha256:"


def new_key() -> bytes:
    """A fresh random key for one run's redaction (never stored)."""
    return secrets.token_bytes(32)


def hash_concept_name(name: str, key: bytes) -> str:
    """The keyed hash of a concept name (the one hashing function of the library and the nodes)."""
    digest = hmac.new(key, name.strip().lower().encode("utf-8"), hashlib.sha256).hexdigest()
    return HASH_PREFIX + digest[:16]


def redact_concept_names(meta: dict, key: bytes | None = None) -> dict:
    """A copy of a run's metadata or report (a dict with 'concepts' [{'name', 'superclass'}, ...]
    and optionally 'retain_prompts', 'stats', 'notes') with the concept names replaced by
    `hash_concept_name` under `key` (a fresh `new_key()` if None) as described at the top of this
    module. The input is not modified."""
    key = new_key() if key is None else key
    out = copy.deepcopy(meta)
    names = [c["name"] for c in out.get("concepts", []) if isinstance(c, dict) and isinstance(c.get("name"), str)]
    hashed = {n.strip().lower(): hash_concept_name(n, key) for n in names}
    for c in out.get("concepts", []):
        if isinstance(c, dict) and isinstance(c.get("name"), str):
            c["name"] = hashed[c["name"].strip().lower()]
    if isinstance(out.get("retain_prompts"), list):
        out["retain_prompts"] = f"<{len(out['retain_prompts'])} prompt(s), not stored>"
    for row in out.get("stats", []) or []:
        if isinstance(row, dict) and isinstance(row.get("concept"), str):
            row["concept"] = hashed.get(row["concept"].strip().lower(), hash_concept_name(row["concept"], key))
    if isinstance(out.get("notes"), list):
        out["notes"] = [redact_text(n, hashed) if isinstance(n, str) else n for n in out["notes"]]
    return out


def redact_text(text: str, hashed: dict[str, str]) -> str:
    """`text` with every case-insensitive occurrence of a name (keys of `hashed`, normalised names)
    replaced by its hash, longest names first, in one pass (a hash is never searched again); the
    spaces of a name also match '_' and '-' (file names such as van_gogh_1.png)."""
    names = sorted((n for n in hashed if n), key=len, reverse=True)
    if not names:
        return text
    patterns = {n: r"[\s_\-]+".join(re.escape(w) for w in n.split()) for n in names}
    pattern = re.compile("|".join(patterns[n] for n in names), flags=re.IGNORECASE)

    def replace(match: re.Match) -> str:
        found = match.group(0)
        return next(hashed[n] for n in names if re.fullmatch(patterns[n], found, flags=re.IGNORECASE))

    return pattern.sub(replace, text)
