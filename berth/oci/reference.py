"""Image references parsed and normalised as Docker does (pure, no I/O).

``busybox`` is ``docker.io/library/busybox:latest``; ``localhost:5000/a/b:tag``,
``name@sha256:<hex>`` and ``name:tag@sha256:<hex>`` are accepted. ``familiar()`` gives the
short form Docker prints (``busybox:latest``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from berth.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN_NAME = rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*"
_HOST = rf"(?:{_DOMAIN_NAME}|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"

_REFERENCE_RE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$")
_ANCHORED_NAME_RE = re.compile(rf"^(?:({_DOMAIN})/)?({_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)$")
_TAG_RE = re.compile(rf"^{_TAG}$")
_HEX64_RE = re.compile(r"^[a-f0-9]{64}$")
_SHA256_RE = re.compile(r"^sha256:[a-f0-9]{64}$")


@dataclass(frozen=True)
class Reference:
    """A normalised reference: ``domain/path[:tag][@digest]``."""

    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def registry(self) -> str:
        """The registry host (``docker.io`` for Docker Hub)."""
        return self.domain

    @property
    def repository(self) -> str:
        """The repository path inside the registry (``library/busybox``)."""
        return self.path

    @property
    def name(self) -> str:
        """The full name without tag or digest (``docker.io/library/busybox``)."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        s = self.name
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def familiar_name(self) -> str:
        """The name as Docker prints it (``busybox``, ``user/app``, ``localhost:5000/a``)."""
        if self.domain == DEFAULT_DOMAIN:
            path = self.path
            if path.startswith(OFFICIAL_REPO_PREFIX) and "/" not in path[len(OFFICIAL_REPO_PREFIX):]:
                path = path[len(OFFICIAL_REPO_PREFIX):]
            return path
        return self.name

    def familiar(self) -> str:
        """The whole reference in Docker's short form (``busybox:latest``)."""
        s = self.familiar_name()
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def with_tag(self, tag: str) -> Reference:
        if not _TAG_RE.match(tag):
            raise InvalidArgument(f"invalid tag format: {tag!r}")
        return replace(self, tag=tag, digest="")

    def with_digest(self, digest: str) -> Reference:
        if not re.match(rf"^{_DIGEST}$", digest):
            raise InvalidArgument(f"invalid digest format: {digest!r}")
        return replace(self, tag="", digest=digest)

    def name_only(self) -> Reference:
        return replace(self, tag="", digest="")

    def tagged(self) -> Reference:
        """This reference with ``:latest`` added when it has neither tag nor digest."""
        if self.tag or self.digest:
            return self
        return replace(self, tag=DEFAULT_TAG)


def _split_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    if i == -1:
        return DEFAULT_DOMAIN, name
    first = name[:i]
    if "." not in first and ":" not in first and first != "localhost" and first.lower() == first:
        return DEFAULT_DOMAIN, name
    domain, rest = first, name[i + 1:]
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    return domain, rest


def parse(s: str, *, default_tag: bool = True) -> Reference:
    """Parse a reference as ``docker pull`` would (normalised; ``:latest`` added by default).

    Raises InvalidArgument ("invalid reference format...") for malformed input.
    """
    if not isinstance(s, str) or not s:
        raise InvalidArgument("invalid reference format")
    if len(s) > 4096:
        raise InvalidArgument("invalid reference format: reference too long")
    if _HEX64_RE.match(s):
        raise InvalidArgument(
            f"invalid repository name ({s}), cannot specify 64-byte hexadecimal strings")
    m = _REFERENCE_RE.match(s)
    if not m:
        if _REFERENCE_RE.match(s.lower()):
            raise InvalidArgument(f"invalid reference format: repository name ({s}) must be lowercase")
        raise InvalidArgument(f"invalid reference format: {s!r}")
    name, tag, dig = m.group(1), m.group(2) or "", m.group(3) or ""
    domain, path = _split_domain(name)
    if path.lower() != path:
        raise InvalidArgument(f"invalid reference format: repository name ({path}) must be lowercase")
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_REPO_PREFIX + path
    if not _ANCHORED_NAME_RE.match(f"{domain}/{path}"):
        raise InvalidArgument(f"invalid reference format: {s!r}")
    if len(domain) + 1 + len(path) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidArgument(
            "invalid reference format: repository name must not be more than "
            f"{NAME_TOTAL_LENGTH_MAX} characters")
    if dig.startswith("sha256:") and not _SHA256_RE.match(dig):
        raise InvalidArgument(f"invalid reference format: invalid digest {dig!r}")
    ref = Reference(domain=domain, path=path, tag=tag, digest=dig)
    return ref.tagged() if default_tag else ref


def parse_name(s: str) -> Reference:
    """Parse a repository name only (no tag, no digest); e.g. the target of ``docker tag``'s repo."""
    ref = parse(s, default_tag=False)
    if ref.tag or ref.digest:
        raise InvalidArgument(f"invalid reference format: {s!r} is not a repository name")
    return ref


def is_valid_tag(tag: str) -> bool:
    return bool(_TAG_RE.match(tag))


def looks_like_id(s: str) -> bool:
    """True for ``sha256:<hex>``, a 64-hex ID, or a short hex prefix Docker would try as an ID."""
    if s.startswith("sha256:"):
        s = s[7:]
    return bool(re.match(r"^[a-f0-9]{1,64}$", s))


def familiar(s: str) -> str:
    """Normalise then shorten: ``docker.io/library/busybox`` → ``busybox:latest``."""
    return parse(s).familiar()
