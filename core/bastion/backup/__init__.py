"""Encrypted, authenticated backups: `bastion backup`, `bastion backup verify`, `bastion restore`.

- ``stream``: chunked AES-256-GCM (a streaming AEAD) over the payload;
- ``keysource``: the archive's key, wrapped by the master key or derived from a passphrase;
- ``container``: the file's header and how it binds the payload;
- ``snapshot`` and ``facts``: a consistent copy of the live database and what it holds;
- ``manifest``: what the archive holds, with sizes and SHA-256 of every member;
- ``archive``: the tar payload, written and read as streams;
- ``create``, ``verify``, ``restore`` (and ``pg_restore``): the three operations.
"""
