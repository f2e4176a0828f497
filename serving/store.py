"""``RecStore``: the one object the batch writer and the readers share, over the key contract.

It is put together from three modules, one idea each:

- ``serving.keys``: the key contract (key names and layout, version names, the manifest
  and its checksum, the encoding of book-id lists) and the errors of a request that breaks it;
- ``serving.reader``: the reads (the GETs behind a request, aliases, versions, verification);
- ``serving.writer``: the writes (publishing a version, the alias cutover, rollback,
  retention) and the errors of a write the store refuses.

``RecStore``, its errors, ``Manifest``, ``ShardReceipt`` and the list encoding are
importable from here or from the module that defines them.
"""

from __future__ import annotations

from serving.keys import (
    InvalidNameError,
    InvalidPayloadError,
    Manifest,
    StoreError,
    decode_items,
    encode_items,
)
from serving.writer import (
    AliasChangedError,
    NoRollbackTargetError,
    NotReplicatedError,
    RecWriter,
    ShardReceipt,
    SwitchNotReplicatedError,
    VersionCommittedError,
    VersionNotCommittedError,
    unconfirmed_switch,
)

__all__ = [
    "AliasChangedError",
    "InvalidNameError",
    "InvalidPayloadError",
    "Manifest",
    "NoRollbackTargetError",
    "NotReplicatedError",
    "RecStore",
    "ShardReceipt",
    "StoreError",
    "SwitchNotReplicatedError",
    "VersionCommittedError",
    "VersionNotCommittedError",
    "decode_items",
    "encode_items",
    "unconfirmed_switch",
]


class RecStore(RecWriter):
    """Writer and reader of versioned recommendation lists under one key prefix.

    The key names come from ``RecKeys`` (``serving.keys``), the reads from ``RecReader``
    (``serving.reader``) and the writes from ``RecWriter`` (``serving.writer``).
    """
