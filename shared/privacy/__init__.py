"""Crypto-shredding (DESIGN §3): personal fields sealed with a per-subject key.

* ``shredding`` – subject keys, sealing before the append, opening on read; erasure deletes the key.
"""

from shared.privacy.shredding import (
    NONCE_BYTES,
    SEALED_PREFIX,
    KeyRing,
    Sealer,
    SubjectErased,
    decode_unopened,
    erased_subjects,
    is_sealed,
    keys_in,
    metadata,
    open_event,
    open_stored,
    open_value,
    personal_fields,
    seal_value,
    stored_subject,
    subject_keys,
    subject_of,
    subjects_of,
)

__all__ = [
    "NONCE_BYTES",
    "SEALED_PREFIX",
    "KeyRing",
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
