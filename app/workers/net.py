"""Listening addresses shared by the workers (SO_REUSEPORT)."""

from __future__ import annotations

import socket


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def reuseport_socket(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) that the other workers can bind too (the kernel balances
    new connections over those listening)."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def reserve(host: str, port: int, what: str) -> socket.socket:
    """Hold (host, port) for the workers: bound, never listening, so it gets no connections.
    A plain bind first, so a port someone else holds (even with SO_REUSEPORT) fails here, as it
    does with one process; port 0 picks a free port."""
    try:
        with socket.socket(_family(host), socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
            port = probe.getsockname()[1]
        return reuseport_socket(host, port)
    except OSError as exc:
        raise SystemExit(f"{what} cannot bind {host}:{port}: {exc.strerror}") from None
