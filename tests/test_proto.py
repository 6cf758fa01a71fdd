"""The committed generated code matches proto/ (run `make proto` after editing the .proto)."""

from __future__ import annotations

from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ("recommender_pb2.py", "recommender_pb2.pyi", "recommender_pb2_grpc.py")


def test_generated_code_is_current(tmp_path: Path) -> None:
    code = protoc.main(
        [
            "protoc",
            f"-I{ROOT / 'proto'}",
            f"-I{Path(grpc_tools.__file__).parent / '_proto'}",  # google/protobuf/*.proto
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            str(ROOT / "proto" / "recsvc" / "v1" / "recommender.proto"),
        ]
    )
    assert code == 0
    for name in GENERATED:
        fresh = (tmp_path / "recsvc" / "v1" / name).read_text()
        committed = (ROOT / "recsvc" / "v1" / name).read_text()
        assert fresh == committed, f"recsvc/v1/{name} is stale: run `make proto`"
