"""Crypto-shredding (DESIGN §3): personal fields sealed with a per-subject key.

* ``shredding`` – subject keys, sealing before the append, opening on read; erasure deletes the key.
"""

from shared.privacy.shredding import (
    SEALED_PREFIX,
    NONCE_BYTES,
    metadata,
    subject_keys,
    erased_subjects,
    personal_fields,
    subject_of,
    is_sealed,
    seal_value,
    open_value,
    keys_in,
    stored_subject,
    subjects_of,
    open_stored,
    open_event,
    decode_unopened,
    SubjectErased,
    KeyRing,
    Sealer,
)

__all__ = [
    "KeyRing",
    "NONCE_BYTES",
    "SEALED_PREFIX",
    "Sealer",
    "SubjectErased",
    "decode_unopened",
    "erased_subjects",
    "is_sealed",
    "keys_in",
    "metadata",
    "open_event",
    "open_stored",
    "open_value",
    "personal_fields",
    "seal_value",
    "stored_subject",
    "subject_keys",
    "subject_of",
    "subjects_of",
]
