"""The committed perpnet.proto package is exactly what proto_gen makes from proto/perpnet/v1."""

from __future__ import annotations

import importlib
from pathlib import Path

from perpnet import proto_gen


def test_generated_code_is_current(tmp_path: Path) -> None:
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in proto_gen.generate(tmp_path)}
    committed_root = proto_gen.OUTPUT
    committed = {
        p.relative_to(committed_root): p.read_bytes()
        for p in committed_root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    stale = sorted(str(name) for name in fresh.keys() | committed.keys()
                   if fresh.get(name) != committed.get(name))  # fmt: skip
    assert not stale, f"regenerate with `python -m perpnet.proto_gen`: {stale}"


def test_every_service_module_imports() -> None:
    for proto in sorted((proto_gen.PROTO_ROOT / proto_gen.PROTO_PACKAGE).glob("*.proto")):
        grpc_module = importlib.import_module(f"perpnet.proto.v1.{proto.stem}_pb2_grpc")
        service = proto.stem.capitalize()
        assert hasattr(grpc_module, f"{service}Servicer"), proto.name
        assert hasattr(grpc_module, f"add_{service}Servicer_to_server"), proto.name
