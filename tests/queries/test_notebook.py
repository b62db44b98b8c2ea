"""examples/quickstart.ipynb run by a real Jupyter kernel against the simulator (issue 18, item 8).

Notebooks are where ib_insync's event loop is most fragile: the kernel runs every cell inside its own
running asyncio loop, so the read-through must fetch without "This event loop is already running".
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

import queries
from tests.helpers.gateways import next_client_id

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "quickstart.ipynb"


def test_the_quickstart_notebook_runs_in_a_real_kernel(tmp_path: Path, make_gateway,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    gateway = make_gateway()
    (tmp_path / "data").mkdir()  # as a clone's data/ (its .gitkeep): a folder that does not exist is a typo
    for name, value in {"HARVEST_PORT": gateway.port, "HARVEST_DATA_DIR": tmp_path / "data",
                        "HARVEST_CLIENT_ID": next_client_id()}.items():
        monkeypatch.setenv(name, str(value))  # the kernel inherits this process's environment
    monkeypatch.delenv("HARVEST_CONFIG", raising=False)  # the kernel runs in tmp_path: no harvest.toml there
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # raises on any cell's error
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "10 bars of ['AAPL', 'MSFT']" in text
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the candles, inline
    con = queries.connect(tmp_path / "data")
    assert con.execute("SELECT count(*) FROM journal WHERE kind = 'bars'").fetchall()[0][0] > 0  # it did fetch
    assert con.execute("SELECT count(DISTINCT symbol) FROM bars").fetchall() == [(2,)]
