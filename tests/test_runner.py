import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from helpers import execution, runner
from helpers.runner import clean_for_commit, course_notebooks, main, parse_parameters


def write_notebook(path, *sources):
    notebook = new_notebook(cells=[new_code_cell(s) for s in sources])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


@pytest.fixture
def notebooks(tmp_path, monkeypatch):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    monkeypatch.setattr(execution, "NOTEBOOK_DIR", folder)
    # these notebooks start no Spark: no shared driver (tests/test_shared_driver.py tests that one)
    monkeypatch.setattr(runner, "start_shared_driver", lambda: (None, None))
    return folder


def test_notebooks_run_in_course_order_and_can_be_selected(notebooks):
    for name in ("01_b.ipynb", "00_a.ipynb", "10_c.ipynb", "scratch.ipynb"):
        write_notebook(notebooks / name, "1")
    assert [p.name for p in course_notebooks()] == ["00_a.ipynb", "01_b.ipynb", "10_c.ipynb"]
    assert [p.name for p in course_notebooks(["01", "10"])] == ["01_b.ipynb", "10_c.ipynb"]
    with pytest.raises(SystemExit, match="No notebook .* starts with 99"):
        course_notebooks(["99"])


def test_parameters_are_python_literals_when_they_can_be():
    assert parse_parameters(["n=3", "flag=True", "name=linreg", "ratio=0.5"]) == {
        "n": 3, "flag": True, "name": "linreg", "ratio": 0.5}
    with pytest.raises(SystemExit, match="not name=value"):
        parse_parameters(["oops"])


def test_a_green_course_prints_the_table_and_writes_back(workspace, notebooks, capsys):
    source = write_notebook(notebooks / "00_ok.ipynb", "# parameters\nanswer = 1", "print('answer', 6 * 7)")
    assert main(["--write-back"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^00_ok.ipynb +passed +\d+\.\d$", out, flags=re.M) and "total" in out
    refreshed = nbformat.read(source, as_version=4)
    assert refreshed.cells[1].outputs[0].text == "answer 42\n"
    assert "papermill" not in refreshed.metadata
    assert (workspace / "executed" / "00_ok.ipynb").exists()


def test_a_failing_notebook_stops_the_course_and_names_the_cell(workspace, notebooks, capsys):
    write_notebook(notebooks / "00_ok.ipynb", "x = 1")
    write_notebook(notebooks / "01_broken.ipynb", "y = 2", "raise ValueError('the data is missing')")
    write_notebook(notebooks / "02_later.ipynb", "z = 3")
    assert main([]) == 1
    captured = capsys.readouterr()
    assert re.search(r"^01_broken.ipynb +failed ", captured.out, flags=re.M)
    assert re.search(r"^02_later.ipynb +not run ", captured.out, flags=re.M)
    assert "01_broken.ipynb failed in cell 1" in captured.err
    assert "ValueError: the data is missing" in captured.err
    assert "workspace/executed/01_broken.ipynb" in captured.err


def test_parameters_reach_the_notebook(workspace, notebooks):
    cell = nbformat.v4.new_code_cell("greeting = 'hello'")
    cell.metadata["tags"] = ["parameters"]
    notebook = new_notebook(cells=[cell, new_code_cell("assert greeting == 'bonjour', greeting")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, notebooks / "00_params.ipynb")
    assert main(["-p", "greeting=bonjour"]) == 0


def test_write_back_refuses_parameters(workspace, notebooks):
    with pytest.raises(SystemExit):
        main(["--write-back", "-p", "a=1"])


def test_clean_for_commit_drops_papermills_bookkeeping(tmp_path):
    path = write_notebook(tmp_path / "n.ipynb", "1")
    notebook = nbformat.read(path, as_version=4)
    notebook.metadata["papermill"] = {"duration": 1.0}
    notebook.cells[0].metadata.update(papermill={"duration": 0.1}, execution={}, tags=[])
    nbformat.write(notebook, path)
    clean_for_commit(path)
    cleaned = nbformat.read(path, as_version=4)
    assert "papermill" not in cleaned.metadata and cleaned.cells[0].metadata == {}


def test_a_prerequisite_run_from_a_notebook_needs_no_runner_before_it(workspace, notebooks):
    # A learner opens 04 first: it runs 02 itself, in a workspace where no runner has made executed/ yet.
    write_notebook(notebooks / "02_tuning.ipynb", "print('tuned')")
    assert not (workspace / "executed").exists()
    execution.run_prerequisite("02_tuning.ipynb", "Runs of 02 are missing")
    assert "tuned" in (workspace / "executed" / "02_tuning.ipynb").read_text()


def assert_floors_within_rounding(floors, seconds, floor_seconds, terms=1):
    """Every figure in the report is printed to one decimal, so each is off by up to 0.05: with a floor of about 0.6 s
    that alone moves the ratio by 8 %. The printed floors must lie within what those roundings allow, no wider."""
    slack = 0.05 * terms  # seconds is a difference of `terms` printed figures
    lowest = (seconds - slack) / (floor_seconds + 0.05) - 0.05
    highest = (seconds + slack) / (floor_seconds - 0.05) + 0.05
    assert lowest <= floors <= highest, (floors, seconds, floor_seconds)


def test_the_speed_report_states_each_notebook_in_reference_floors_and_names_its_slowest_cell(
        workspace, notebooks, tmp_path, monkeypatch, capsys):
    floor = write_notebook(tmp_path / "floor.ipynb", "import time; time.sleep(0.5)")
    monkeypatch.setattr(runner, "REFERENCE_FLOOR", floor)
    write_notebook(notebooks / "00_quick.ipynb", "x = 1")
    slow = write_notebook(notebooks / "01_slow.ipynb", "y = 2", "import time\ntime.sleep(2.5)  # the slow one")
    notebook = nbformat.read(slow, as_version=4)
    notebook.metadata["course"] = {"extra_processes": 2}  # a lesson about two extra processes may cost 3 + 2 floors
    nbformat.write(notebook, slow)
    assert main(["--profile"]) == 0
    out = capsys.readouterr().out
    floor_seconds = float(re.search(r"reference floor (\d+\.\d) s", out).group(1))
    row = re.search(r"^01_slow.ipynb +(\d+\.\d) +(\d+\.\d) +5 .*1: (\d+\.\d) \(import time\)", out, flags=re.M)
    assert row, out
    seconds, floors, cell_seconds = map(float, row.groups())
    assert_floors_within_rounding(floors, seconds, floor_seconds)
    assert 2.5 <= cell_seconds < seconds
    assert re.search(r"^00_quick.ipynb +\d+\.\d +\d+\.\d +3 ", out, flags=re.M)


def test_the_speed_report_does_not_count_a_prerequisite_in_the_floors_of_the_notebook_that_ran_it(
        workspace, notebooks, tmp_path, monkeypatch, capsys):
    floor = write_notebook(tmp_path / "floor.ipynb", "import time; time.sleep(0.5)")
    monkeypatch.setattr(runner, "REFERENCE_FLOOR", floor)
    write_notebook(notebooks / "00_base.ipynb", "import time; time.sleep(3)")
    # 01 finds 00's results missing and runs it first, as a lesson or a lab does
    write_notebook(notebooks / "01_needs.ipynb", f"from pathlib import Path\nfrom helpers import execution\n"
                   f"execution.NOTEBOOK_DIR = Path({str(notebooks)!r})\n"
                   "execution.run_prerequisite('00_base.ipynb', 'Table base is not in this workspace yet')")
    assert main(["--only", "01", "--profile"]) == 0
    out = capsys.readouterr().out
    floor_seconds = float(re.search(r"reference floor (\d+\.\d) s", out).group(1))
    row = re.search(r"^01_needs.ipynb +(\d+\.\d) +(\d+\.\d) +3[ !]+(\d+\.\d) s of it ran 00_base.ipynb first", out,
                    flags=re.M)
    assert row, out
    seconds, floors, prerequisite = map(float, row.groups())
    assert 3 <= prerequisite < seconds
    assert_floors_within_rounding(floors, seconds - prerequisite, floor_seconds, terms=2)


def test_kernel_sockets_stay_out_of_the_notebooks_folder(workspace, notebooks):
    from jupyter_core.paths import jupyter_runtime_dir

    write_notebook(notebooks / "00_where.ipynb", "import os\n"
                   "print('here:', sorted(f for f in os.listdir('.') if 'kernel' in f))\n"
                   f"print('runtime:', any(f.startswith('course-kernel-') for f in os.listdir({jupyter_runtime_dir()!r})))")
    assert main([]) == 0
    out = nbformat.read(workspace / "executed" / "00_where.ipynb", as_version=4).cells[0].outputs[0].text
    assert out.splitlines() == ["here: []", "runtime: True"]


def test_two_kernels_starting_at_once_get_their_own_sockets(tmp_path):
    """Two runners (the test suite's workers) may start kernels in the same instant: each kernel's sockets must be
    its own, or one runner reads the other's messages and stops with "Invalid Signature"."""
    from jupyter_client.manager import AsyncKernelManager

    from helpers.execution import kernel_config

    managers = [AsyncKernelManager(config=kernel_config(tmp_path / "kernels.log"),
                                   connection_file=str(tmp_path / f"kernel-{index}.json")) for index in range(2)]
    for manager in managers:  # both choose their sockets before either kernel binds one, as in a race
        manager.write_connection_file()
    sockets = [{f"{manager.ip}-{getattr(manager, port)}" for port in
                ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")} for manager in managers]
    assert all(len(found) == 5 for found in sockets)
    assert not sockets[0] & sockets[1], sockets
