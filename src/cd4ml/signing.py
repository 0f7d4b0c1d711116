"""Signed releases: who made a bundle, not only whether its bytes are whole.

    python -m cd4ml.signing keygen                  # keys/release.pem (secret), keys/release.pub
    python -m cd4ml.signing sign models/bundle      # the release job: CD4ML_SIGNING_KEY
    python -m cd4ml.signing verify models/bundle    # against keys/release.pub

The manifest's sha256 list catches a changed byte, but whoever can write the DVC remote can
rewrite the manifest too. The release job therefore signs the bundle folder with OpenSSF Model
Signing (model-signing, key mode: an ECDSA P-256 key pair) into the folder's own `model.sig`,
so the signature travels wherever the bundle goes (DVC remote, registry, image), and
`model_signing verify key <bundle> --signature <bundle>/model.sig --public_key <pub>` checks it
with the library's own command as well.

The private key is the masked CI variable CD4ML_SIGNING_KEY (the PEM, base64 on one line, as
`keygen` prints it) or a file given with --private-key. The public key is the file
CD4ML_PUBLIC_KEY names, by default keys/release.pub, committed with the code.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any

from cd4ml.io import UserError, atomic_path, run_main

log = logging.getLogger("signing")

SIGNATURE = "model.sig"
PRIVATE_KEY_ENV = "CD4ML_SIGNING_KEY"
PUBLIC_KEY_ENV = "CD4ML_PUBLIC_KEY"
PUBLIC_KEY = Path("keys/release.pub")
KEYGEN = "python -m cd4ml.signing keygen (make signing-key)"


def public_key_path(path: str | Path | None = None) -> Path:
    """The public key to verify with: `path`, else CD4ML_PUBLIC_KEY, else keys/release.pub."""
    return Path(path or os.environ.get(PUBLIC_KEY_ENV) or PUBLIC_KEY)


def is_signed(folder: Path) -> bool:
    return (folder / SIGNATURE).is_file()


def _hashing() -> Any:
    """model-signing's hashing settings (imported here: the library takes 0.4 s to import)."""
    from model_signing import hashing

    # The signature lies in the folder it signs: it is not part of what it signs (as the
    # library's own command does). Links are followed: DVC may link a bundle's files into its
    # cache, and what is hashed is the content either way.
    config = hashing.Config().set_ignored_paths(paths=[SIGNATURE], ignore_git_paths=False)
    return config.set_allow_symlinks(True)


def keygen(private: Path, public: Path) -> str:
    """A new ECDSA P-256 key pair in PEM files; returns the private key as CD4ML_SIGNING_KEY's
    value (base64 on one line: GitLab masks only one-line values)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    for path in (private, public):
        if path.exists():
            raise UserError(f"{path}: exists; move it away first (rotating keys: see the README)")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    pub = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    private.parent.mkdir(parents=True, exist_ok=True)
    public.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    with atomic_path(public) as path:
        path.write_bytes(pub)
    return base64.b64encode(pem).decode("ascii")


def _private_pem(private_key: Path | None) -> bytes:
    """The private key's PEM: the file given, else CD4ML_SIGNING_KEY (base64 of the PEM, or the
    PEM itself, or the path of a file holding it: GitLab's file variables)."""
    if private_key is not None:
        try:
            return private_key.read_bytes()
        except OSError as err:
            raise UserError(f"{private_key}: cannot read the key ({err.strerror})") from None
    value = os.environ.get(PRIVATE_KEY_ENV, "").strip()
    if not value:
        raise UserError(
            f"{PRIVATE_KEY_ENV} is not set: give the release job the private key as a masked CI "
            f"variable (its value is printed by {KEYGEN}), or pass --private-key FILE"
        )
    if value.startswith("-----BEGIN"):
        return value.encode("ascii")
    with contextlib.suppress(binascii.Error, ValueError):
        pem = base64.b64decode(value, validate=True)
        if pem.startswith(b"-----BEGIN"):
            return pem
    with contextlib.suppress(OSError):
        return Path(value).read_bytes()
    raise UserError(
        f"{PRIVATE_KEY_ENV}: neither a PEM key, nor its base64, nor a file; set it to the "
        f"line {KEYGEN} printed"
    )


def sign(folder: Path, private_key: Path | None = None) -> float:
    """Sign the bundle `folder` into its model.sig (replacing one there); the seconds it took."""
    from model_signing import signing

    if not folder.is_dir():
        raise UserError(f"{folder}: no bundle folder to sign; run `dvc repro bundle` first")
    pem = _private_pem(private_key)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "key.pem"
        key.touch(mode=0o600)
        key.write_bytes(pem)
        try:
            signer = signing.Config().use_elliptic_key_signer(private_key=key)
        except ValueError as err:
            raise UserError(f"{PRIVATE_KEY_ENV}: not an EC private key in PEM ({err})") from None
        # Written outside the folder first: a temp file inside it would be signed too.
        signer.set_hashing_config(_hashing()).sign(folder, Path(tmp) / SIGNATURE)
        with atomic_path(folder / SIGNATURE) as out:
            out.write_bytes((Path(tmp) / SIGNATURE).read_bytes())
    return time.perf_counter() - start


def _why(err: Exception) -> str:
    """model-signing's refusal, as a reason a person reads (its own text lists digests)."""
    text = str(err)
    if text.startswith("Key mismatch"):
        return "signed by another key than the public key"
    changed = re.findall(r"Hash mismatch for \\?'([^'\\]+)", text)  # quotes may come escaped
    if changed:
        return f"altered after signing: {', '.join(sorted(changed))} changed"
    listed = r"(Extra|Missing) files? (?:found )?in model \\?'[^']*': ([^\"'\]\\]+)"
    extra = re.search(listed, text)
    if extra:
        return f"altered after signing: {extra.group(1).lower()} file(s) {extra.group(2).strip()}"
    return f"the signature does not match ({text[:200]})"


def verify(folder: Path, public_key: Path | None = None, name: str | None = None) -> None:
    """Check the bundle `folder` against its model.sig with the public key; a UserError naming
    the bundle (`name`, else the folder) and the reason otherwise."""
    from model_signing import verifying

    what = name or str(folder)
    key = public_key_path(public_key)
    if not folder.is_dir():
        raise UserError(f"{what}: no bundle folder; run `dvc repro bundle` or fetch a release")
    if not is_signed(folder):
        raise UserError(
            f"{what}: unsigned (no {SIGNATURE}): a release is signed (make sign, in the release "
            "job); serve a bundle built here with --allow-unsigned"
        )
    if not key.is_file():
        raise UserError(
            f"{key}: no public key to verify {what} with; commit the release key's public half "
            f"there (made by {KEYGEN}) or set {PUBLIC_KEY_ENV}"
        )
    try:
        verifier = verifying.Config().use_elliptic_key_verifier(public_key=key)
    except ValueError as err:
        raise UserError(f"{key}: not an EC public key in PEM ({err})") from None
    try:
        verifier.set_hashing_config(_hashing()).verify(folder, folder / SIGNATURE)
    except json.JSONDecodeError:
        raise UserError(f"{what}: {SIGNATURE} is not a signature (damaged); refusing it") from None
    except (KeyError, TypeError, AttributeError):
        raise UserError(f"{what}: {SIGNATURE} is not a signature (damaged); refusing it") from None
    except ValueError as err:
        raise UserError(f"{what}: {_why(err)} ({key}); refusing it") from None


def check(
    folder: Path,
    *,
    allow_unsigned: bool = False,
    public_key: Path | None = None,
    name: str | None = None,
) -> bool:
    """Whether the bundle is signed, once verified. A signed bundle is always verified; an
    unsigned one is refused unless `allow_unsigned` (a local build), and said so."""
    if allow_unsigned and not is_signed(folder):
        log.warning("%s: unsigned, allowed (--allow-unsigned): a local build", name or folder)
        return False
    start = time.perf_counter()
    verify(folder, public_key, name)
    log.info(
        "%s: signature verified with %s in %.2f s",
        name or folder,
        public_key_path(public_key),
        time.perf_counter() - start,
    )
    return True


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("keygen", help="a new key pair: keys/release.pem and keys/release.pub")
    gen.add_argument("--private-key", type=Path, default=Path("keys/release.pem"))
    gen.add_argument("--public-key", type=Path, default=PUBLIC_KEY)
    sig = sub.add_parser("sign", help=f"sign a bundle folder into its {SIGNATURE}")
    sig.add_argument("bundle", type=Path)
    sig.add_argument("--private-key", type=Path, help=f"a PEM file (default: ${PRIVATE_KEY_ENV})")
    ver = sub.add_parser("verify", help="verify a bundle folder's signature")
    ver.add_argument("bundle", type=Path)
    ver.add_argument("--public-key", type=Path, help=f"default: ${PUBLIC_KEY_ENV} or {PUBLIC_KEY}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.command == "keygen":
        secret = keygen(args.private_key, args.public_key)
        print(f"private key: {args.private_key} (keep it secret; never commit it)")
        print(f"public key:  {args.public_key} (commit it: releases are verified with it)")
        print(f"{PRIVATE_KEY_ENV} for the CI variable (masked, protected):")
        print(secret)
    elif args.command == "sign":
        seconds = sign(args.bundle, args.private_key)
        print(f"signed {args.bundle} into {SIGNATURE} in {seconds:.2f} s", flush=True)
    else:
        start = time.perf_counter()
        verify(args.bundle, args.public_key)
        seconds = time.perf_counter() - start
        print(
            f"{args.bundle}: signature verified with {public_key_path(args.public_key)} "
            f"in {seconds:.2f} s",
            flush=True,
        )


if __name__ == "__main__":
    run_main(main)
