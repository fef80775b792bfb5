"""Worker certificates for a remote site: the CurveZMQ keys workers need, copied over ssh.

Workers get the client's keys and the server's PUBLIC key; the interchange's real
secret key never leaves the controller.
"""

import io
import os
import shlex
import tarfile

import zmq
import zmq.auth
from parsl import curvezmq

from pwgen.tunnels import SiteTunnel, TunnelError

_CERT_FILES = ("client.key", "client.key_secret", "server.key")


def create_private_certificates(base_dir: str) -> str:
    """Parsl's fresh certificates in `<base_dir>/certificates`, every key file 0600.

    Parsl makes the directory 0700 but pyzmq writes the keys with the umask (0644).
    """
    cert_dir = str(curvezmq.create_certificates(base_dir))
    for name in os.listdir(cert_dir):
        os.chmod(os.path.join(cert_dir, name), 0o600)
    return cert_dir


def ship_certificates(tunnel: SiteTunnel, cert_dir: str, remote: str) -> None:
    """Copy the workers' bundle of `cert_dir` to `remote` on the site (0700 dir, 0600 files)."""
    quoted = shlex.quote(remote)
    script = (
        f"umask 077 && mkdir -p -- {quoted} && chmod 700 -- {quoted} && "
        f"tar -C {quoted} --no-same-owner -xf - && chmod 600 -- {quoted}/*"
    )
    code, _, err = tunnel.run(script, stdin=certificate_bundle(cert_dir))
    if code != 0:
        raise TunnelError(
            f"site {tunnel.host!r}: cannot copy the worker certificates to {remote}: "
            f"{err.strip() or f'exit {code}'}"
        )


def certificate_bundle(cert_dir: str) -> bytes:
    """A tar of what workers need: the client's keys and the server's PUBLIC key.

    A worker loads `server.key_secret` but uses only its public key, so the copy holds a
    throwaway secret: the interchange's real secret never leaves the controller.
    """
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in _CERT_FILES:
            with open(os.path.join(cert_dir, name), "rb") as handle:
                _add_file(tar, name, handle.read())
        public, _ = zmq.auth.load_certificate(os.path.join(cert_dir, "server.key"))
        _, throwaway = zmq.curve_keypair()
        dummy = (
            "#   Server public key for pwgen workers; the secret key below is a throwaway\n"
            "metadata\n"
            "curve\n"
            f'    public-key = "{public.decode()}"\n'
            f'    secret-key = "{throwaway.decode()}"\n'
        )
        _add_file(tar, "server.key_secret", dummy.encode())
    return buffer.getvalue()


def _add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))
