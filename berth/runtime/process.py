"""The last steps before execve, shared by container init and `exec`: rlimits, user, capabilities,
no_new_privs, seccomp, fd hygiene, cwd check and the executable lookup (127/126 as a shell)."""

from __future__ import annotations

import os
import stat

from berth.runtime.sync import ChildError

RLIMITS = {
    "RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3, "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7, "RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11, "RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PR_SET_KEEPCAPS = 8
PR_SET_NO_NEW_PRIVS = 38
SYS_CLOSE_RANGE = 436
CLOSE_RANGE_CLOEXEC = 4


def env_dict(env: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for e in env:
        k, _, v = e.partition("=")
        out[k] = v
    return out


def set_rlimits(rlimits: list[dict]) -> None:
    if not rlimits:
        return
    import resource

    for rl in rlimits:
        try:
            resource.setrlimit(RLIMITS[rl["type"]], (rl["soft"], rl["hard"]))
        except (ValueError, OSError) as e:
            raise ChildError(f"setrlimit {rl['type']} ({rl['soft']}, {rl['hard']}): {e}") from None


def home_of(uid: int) -> str:
    """Home directory for uid from the container's /etc/passwd (read as data, after pivot_root)."""
    try:
        with open("/etc/passwd", "rb") as f:
            for line in f.read().decode(errors="replace").splitlines():
                p = line.split(":")
                if len(p) >= 6 and p[2] == str(uid):
                    return p[5] or "/"
    except OSError:
        pass
    return "/"


def lookup(arg0: str, env: dict[str, str]) -> str:
    """Resolve the executable like execvp; ChildError 127 if missing, 126 if not executable."""
    if "/" in arg0:
        cands = [arg0]
    else:
        cands = [os.path.join(d or ".", arg0) for d in env.get("PATH", DEFAULT_PATH).split(":")]
    found_noexec = None
    for c in cands:
        try:
            st = os.stat(c)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) and os.access(c, os.X_OK):
            return c
        found_noexec = found_noexec or c
    if found_noexec:
        raise ChildError(f"exec: {found_noexec}: permission denied (not an executable file)", 126)
    if "/" in arg0:
        raise ChildError(f"exec: {arg0}: no such file or directory", 127)
    raise ChildError(f'exec: "{arg0}": executable file not found in $PATH', 127)


def setup_user(user: dict, *, keep_caps: bool = True) -> None:
    """setgroups, setresgid, setresuid; with PR_SET_KEEPCAPS so caps.apply can follow."""
    from berth.sys import linux

    uid = user.get("uid", 0)
    gid = user.get("gid", 0)
    try:
        try:
            os.setgroups(list(user.get("additionalGids") or []))
        except PermissionError:
            if user.get("additionalGids"):
                raise
        if keep_caps:
            linux.prctl(PR_SET_KEEPCAPS, 1)
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as e:
        raise ChildError(f"cannot switch to user {uid}:{gid}: {e.strerror}") from None


def chdir_checked(cwd: str) -> None:
    """chdir, then make sure the result is inside this root (no leaked-fd cwd, CVE-2024-21626)."""
    try:
        os.chdir(cwd)
        real = os.getcwd()
    except FileNotFoundError:
        raise ChildError(f"cwd {cwd!r}: no such directory or it is outside the container root") from None
    except OSError as e:
        raise ChildError(f"cwd {cwd!r}: {e.strerror}") from None
    if not real.startswith("/"):
        raise ChildError(f"cwd {cwd!r} resolves outside the container root")


def close_fds(first: int) -> None:
    """Mark every fd >= first close-on-exec (close_range CLOEXEC)."""
    from berth.sys import linux

    if linux.libc().syscall(SYS_CLOSE_RANGE, first, 0xFFFFFFFF, CLOSE_RANGE_CLOEXEC) < 0:
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd >= first:
                try:
                    os.set_inheritable(fd, False)
                except OSError:
                    pass


_apparmor: bool | None = None


def apparmor_enabled() -> bool:
    """Whether the host kernel has AppArmor enabled (read once, before pivot_root)."""
    global _apparmor
    if _apparmor is None:
        try:
            with open("/sys/module/apparmor/parameters/enabled") as f:
                _apparmor = f.read().strip() == "Y"
        except OSError:
            _apparmor = False
    return _apparmor


class Finalizer:
    """Applies user, capabilities, no_new_privs and seccomp in runc's order."""

    def __init__(self, proc: dict, seccomp_profile: dict | None,
                 compiled: CompiledFilter | None = None) -> None:
        self.proc = proc
        self.seccomp = seccomp_profile
        self.compiled = compiled
        self.nnp = bool(proc.get("noNewPrivileges"))

    def _load_seccomp(self) -> None:
        if self.compiled is not None:
            install_bpf(self.compiled)
        else:
            from berth.runtime import seccomp

            seccomp.load(self.seccomp)

    def before_user(self) -> None:
        """Seccomp without no_new_privs must be loaded while CAP_SYS_ADMIN is still held."""
        caps = self.proc.get("capabilities")
        if self.seccomp is not None and not self.nnp:
            self._load_seccomp()
        if caps is not None:
            from berth.runtime import caps as caps_mod

            caps_mod.drop_bounding(caps.get("bounding") or [])

    def user_and_caps(self) -> None:
        caps = self.proc.get("capabilities")
        setup_user(self.proc.get("user") or {}, keep_caps=caps is not None)
        if caps is not None:
            from berth.runtime import caps as caps_mod

            caps_mod.apply(caps)
        umask = (self.proc.get("user") or {}).get("umask")
        os.umask(0o022 if umask is None else umask)
        if self.nnp:
            from berth.sys import linux

            linux.prctl(PR_SET_NO_NEW_PRIVS, 1)

    def apparmor(self) -> None:
        """Ask for the AppArmor profile on execve (only where AppArmor is enabled, as runc)."""
        profile = self.proc.get("apparmorProfile")
        if profile and apparmor_enabled():
            for path in ("/proc/self/attr/apparmor/exec", "/proc/self/attr/exec"):
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue
                try:
                    os.write(fd, f"exec {profile}".encode())
                except OSError as e:
                    raise ChildError(f"apparmor profile {profile!r}: {e.strerror}") from None
                finally:
                    os.close(fd)
                return
            raise ChildError(f"apparmor profile {profile!r}: no /proc/self/attr to set it")

    def last(self) -> None:
        """Seccomp with no_new_privs, as close to execve as possible."""
        if self.seccomp is not None and self.nnp:
            self._load_seccomp()


# -- seccomp: compile once (libseccomp, cached by profile digest), install with seccomp(2) --------
SYS_SECCOMP = 317
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_KFLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2,
                  "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4}


class CompiledFilter:
    """A seccomp profile compiled to classic BPF, ready to install without libseccomp."""

    __slots__ = ("prog", "flags")

    def __init__(self, prog: bytes, flags: int) -> None:
        self.prog = prog
        self.flags = flags


def compile_seccomp(profile: dict, cache_dir: str) -> CompiledFilter | None:
    """BPF for profile, from `<cache_dir>/<sha256>.bpf` or compiled (and cached) with libseccomp.

    None when the profile needs libseccomp at load time (a notify listener).
    """
    try:
        if profile.get("listenerPath") or any(a.get("action") == "SCMP_ACT_NOTIFY"
                                              for a in profile.get("syscalls") or []):
            return None
        flags = 0
        for f in profile.get("flags") or []:
            if f not in SECCOMP_KFLAGS:
                return None
            flags |= SECCOMP_KFLAGS[f]
    except (AttributeError, TypeError):
        from berth.runtime import seccomp

        seccomp.validate(profile)
        raise
    import _sha256

    from berth.runtime import fastjson

    key = _sha256.sha256(fastjson.dumps(profile).encode()).hexdigest()
    path = os.path.join(cache_dir, key + ".bpf")
    try:
        with open(path, "rb") as fh:
            prog = fh.read()
        if prog and len(prog) % 8 == 0:
            return CompiledFilter(prog, flags)
    except OSError:
        pass
    from berth.runtime import seccomp

    prog = seccomp.export_bpf(profile)
    try:
        os.makedirs(cache_dir, mode=0o700, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "wb") as fh:
            fh.write(prog)
        os.rename(tmp, path)
    except OSError:
        pass
    return CompiledFilter(prog, flags)


def install_bpf(filt: CompiledFilter) -> None:
    """seccomp(SECCOMP_SET_MODE_FILTER) on the calling thread."""
    import ctypes
    import struct

    from berth.sys import linux

    buf = ctypes.create_string_buffer(filt.prog, len(filt.prog))
    fprog = ctypes.create_string_buffer(struct.pack("HxxxxxxQ", len(filt.prog) // 8,
                                                    ctypes.addressof(buf)), 16)
    if linux.libc().syscall(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, filt.flags, fprog) < 0:
        err = ctypes.get_errno()
        raise ChildError(f"seccomp: installing the filter: {os.strerror(err)}")
