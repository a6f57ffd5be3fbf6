import os

import pytest

from berth.errors import NotFound
from berth.images.bootstrap import apt_mirror


def write(root, rel, text):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w") as f:
        f.write(text)


def test_mirror_from_deb822(tmp_path):
    root = str(tmp_path) + "/"
    write(root, "etc/apt/sources.list.d/debian.sources",
          "Types: deb\n# comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
          "Components: main\n\nTypes: deb\nURIs: http://mirror.example/debian-security\n"
          "Suites: bookworm-security\nComponents: main\n")
    assert apt_mirror("bookworm", root) == "http://mirror.example/debian"
    assert apt_mirror("bookworm-security", root) == "http://mirror.example/debian-security"
    with pytest.raises(NotFound):
        apt_mirror("trixie", root)


def test_mirror_from_one_line_format(tmp_path):
    root = str(tmp_path) + "/"
    write(root, "etc/apt/sources.list",
          "# deb http://commented.example/debian bookworm main\n"
          "deb-src http://src.example/debian bookworm main\n"
          "deb [arch=amd64 signed-by=/k.gpg] http://opts.example/debian bookworm main\n")
    assert apt_mirror("bookworm", root) == "http://opts.example/debian"


def test_disabled_stanza_ignored(tmp_path):
    root = str(tmp_path) + "/"
    write(root, "etc/apt/sources.list.d/x.sources",
          "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n")
    with pytest.raises(NotFound):
        apt_mirror("bookworm", root)
