"""The example notebook runs top to bottom on the installed package, and shows its pictures."""

import pathlib

import nbclient
import nbformat

NOTEBOOK = pathlib.Path(__file__).resolve().parents[3] / "examples" / "deepdream.ipynb"


def test_the_notebook_runs_top_to_bottom():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    images = [output for output in outputs if "image/png" in output.get("data", {})]
    gifs = [output for output in outputs if "image/gif" in output.get("data", {})]
    # The photo, the dream (with its live preview), the layers, the style, the channels.
    assert len(images) >= 5, len(images)
    assert len(gifs) == 1
    printed = "".join(output.get("text", "") for output in outputs if output.output_type == "stream")
    assert "cat" in printed
