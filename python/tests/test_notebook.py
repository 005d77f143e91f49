"""The example notebook, executed headless in a real Jupyter kernel (nbclient
+ ipykernel) against the live hub: its transfer must land the bytes."""

from __future__ import annotations

import os
import pathlib

import pytest

NOTEBOOK = pathlib.Path(__file__).resolve().parent.parent / "examples" / "transfer.ipynb"


def test_the_example_notebook_runs_and_its_transfer_lands(hub, monkeypatch, tmp_path):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")
    data = os.urandom(123_456)
    (hub.src_home / "notebook").mkdir(exist_ok=True)
    (hub.src_home / "notebook" / "data.csv").write_bytes(data)
    monkeypatch.setenv("FERRY_NOTEBOOK_SOURCE", "/~/notebook/data.csv")
    monkeypatch.setenv("FERRY_NOTEBOOK_DESTINATION", "/~/from-notebook/data.csv")
    # The kernel inherits this environment, so it imports the SDK under test.
    sdk = str(NOTEBOOK.parent.parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [sdk, os.environ.get("PYTHONPATH")])))

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()

    assert (hub.dst_home / "from-notebook" / "data.csv").read_bytes() == data
    printed = "".join(
        output.get("text", "")
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert f"logged in as {hub.user}" in printed
    assert "SUCCEEDED 1 file(s), 123456 bytes" in printed
    assert "data.csv" in printed, "the listing shows the source file"
    assert "SUBMITTED" in printed and "SUCCEEDED " in printed, printed
