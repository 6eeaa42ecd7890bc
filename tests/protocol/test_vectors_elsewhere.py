"""The vectors checked by a second implementation in another language (Node's built-in crypto), written from
docs/protocol.md: what a journal vendor's code would do. Skipped where there is no `node`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from devstack import protocol_vectors

SCRIPT = Path(__file__).with_name("verify_vectors.cjs")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_verifies_the_vectors_from_the_specification_alone() -> None:
    node = shutil.which("node")
    assert node is not None
    result = subprocess.run(
        [node, str(SCRIPT), str(protocol_vectors.VECTORS)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_node_notices_a_broken_vector(tmp_path: Path) -> None:
    for vector in protocol_vectors.VECTORS.glob("*.json"):
        (tmp_path / vector.name).write_bytes(vector.read_bytes())
    webhook = tmp_path / "webhook.json"
    webhook.write_text(webhook.read_text().replace("referrals.available", "referrals.reminder"))
    node = shutil.which("node")
    assert node is not None
    result = subprocess.run([node, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1 and "webhook signature" in result.stderr
