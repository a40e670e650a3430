"""HTTPS for the client service and the admin API: the certificate and key checked when the
settings are read, so a wrong file is a clear error at start, not a failed handshake later."""

from __future__ import annotations

import ssl
from pathlib import Path

HSTS = "max-age=31536000"  # a browser that met the site over HTTPS keeps to HTTPS for a year


def check_key_pair(cert_file: Path, key_file: Path) -> None:
    """ValueError naming the setting when the files are missing or are not a matching PEM
    certificate and private key."""
    for setting, path in (("MESH_TLS_CERT_FILE", cert_file), ("MESH_TLS_KEY_FILE", key_file)):
        if not path.is_file():
            raise ValueError(f"{setting}: no file at {path}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # A password that is always wrong: OpenSSL would otherwise ask on the terminal
        context.load_cert_chain(cert_file, key_file, password=lambda: b"")
    except ssl.SSLError as exc:
        raise ValueError(f"MESH_TLS_CERT_FILE {cert_file} and MESH_TLS_KEY_FILE {key_file} are "
                         f"not a PEM certificate and its unencrypted private key "
                         f"({exc.reason or exc})") from None
    except OSError as exc:
        raise ValueError(f"cannot read {exc.filename or cert_file}: {exc.strerror}") from None
