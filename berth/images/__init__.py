"""Images: the image store (``store``), unpack into snapshots (``unpack``), base images made here
(``bootstrap``), ``docker import`` (``importer``), ``docker commit`` (``commit``), save/load (``saveload``),
blob helpers (``blobs``).

Nothing is imported here, so importing a submodule stays cheap.
"""
