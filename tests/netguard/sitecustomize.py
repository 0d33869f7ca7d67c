"""The test suite's lookup guard, loaded by every Python process the tests start: tests/conftest.py
puts this folder first on PYTHONPATH, so subprocesses (the CLI, papermill and nbval kernels,
JupyterLab) import it at start-up, and installs it in the test process itself.

A name lookup of anything but loopback (``localhost``, 127.0.0.0/8, ``::1``) is refused with
``socket.gaierror`` and appended to the file named by ``WORKBENCH_TEST_LOOKUPS``; the test run
fails if that file is not empty, even where the refusal was caught.
"""

import ipaddress
import os
import socket

RECORD = "WORKBENCH_TEST_LOOKUPS"


def is_loopback(host: object) -> bool:
    """Whether looking ``host`` up stays on this machine: no name (a wildcard bind) or loopback."""
    if host is None or host in ("", b""):
        return True
    name = (host.decode(errors="replace") if isinstance(host, bytes) else str(host)).rstrip(".").lower()
    try:
        return name == "localhost" or ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def refuse(function: str, host: object) -> None:
    """Record the lookup of ``host`` by ``function`` and refuse it."""
    path = os.environ.get(RECORD)
    if path:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{os.getpid()} {function} {host!r}\n".encode())
        finally:
            os.close(fd)
    raise socket.gaierror(socket.EAI_NONAME, f"tests refuse name lookups outside loopback: {function}({host!r})")


def _guarded(function: str, original, host_of):  # type: ignore[no-untyped-def]
    def guarded(*args, **kwargs):  # type: ignore[no-untyped-def]
        host = host_of(*args, **kwargs)
        if not is_loopback(host):
            refuse(function, host)
        return original(*args, **kwargs)

    guarded.__wrapped__ = original  # type: ignore[attr-defined]
    return guarded


def _first(host, *args, **kwargs):  # type: ignore[no-untyped-def]
    return host


def _sockaddr_host(sockaddr, *args, **kwargs):  # type: ignore[no-untyped-def]
    return sockaddr[0]


def install() -> None:
    """Guard ``socket``'s lookup functions in this process (once)."""
    if getattr(socket, "_workbench_netguard", False):
        return
    for function in ("getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
        setattr(socket, function, _guarded(function, getattr(socket, function), _first))
    socket.getnameinfo = _guarded("getnameinfo", socket.getnameinfo, _sockaddr_host)
    socket._workbench_netguard = True  # type: ignore[attr-defined]


install()
