"""Documents as the parts of a multipart request, for either API: small files read at
once (a missing file fails before anything is sent), large ones streamed."""

from __future__ import annotations

import contextlib
import os
import unicodedata
from collections.abc import Sequence
from typing import IO

from faxgate.domain.provider import Upload

__all__ = ["UploadPart", "in_one_piece", "upload_parts"]

UploadPart = tuple[str, tuple[str, IO[bytes] | bytes, str]]

# Files up to this size are read into memory and sent in one piece; larger ones stream.
_IN_MEMORY = 1024 * 1024


def upload_parts(
    files: Sequence[Upload], names: Sequence[str], opened: contextlib.ExitStack
) -> list[UploadPart]:
    """Each file as a part under its field name; large files are opened in `opened`."""
    contents = [_content(upload, opened) for upload in files]
    return [
        (field, (_plain_name(upload.name), content, upload.content_type))
        for field, upload, content in zip(names, files, contents, strict=True)
    ]


def in_one_piece(files: list[UploadPart] | None) -> bool:
    """Whether every part is in memory, so the whole body can be written at once."""
    return bool(files) and all(isinstance(part[1][1], bytes) for part in files or ())


def _plain_name(name: str) -> str:
    """A file name fit for a multipart header: control and other invisible characters (a
    hot folder takes any name a file system allows) become "_"."""
    return "".join("_" if unicodedata.category(char)[0] == "C" else char for char in name)


def _content(upload: Upload, opened: contextlib.ExitStack) -> IO[bytes] | bytes:
    """A small file's bytes (read now: a missing file fails before anything is sent);
    a large file opened, to be streamed."""
    if isinstance(upload.content, bytes):
        return upload.content
    handle = opened.enter_context(upload.content.open("rb"))
    if os.fstat(handle.fileno()).st_size <= _IN_MEMORY:
        return handle.read()
    return handle
