"""The content store: blobs named by digest, written through verified ingests."""

from berth.content.store import BlobInfo, ContentStore
from berth.content.writer import BlobWriter

__all__ = ["BlobInfo", "BlobWriter", "ContentStore"]
