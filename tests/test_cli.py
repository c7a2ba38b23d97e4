"""The command-line boundary (recbole_ext/cli.py): an input mistake prints ``error: ...`` (one or two lines, no
traceback) and exits 2; ``--debug`` / ``RECBOLE_EXT_DEBUG=1`` shows the traceback; a bug inside training keeps
its traceback; Ctrl-C exits 130 with one line naming the last checkpoint and the resume command."""

import os
import signal
import subprocess
import sys

import pytest

import run_hyper
import run_recbole
from recbole_ext import cli
from recbole_ext.errors import ConfigError, RunInterrupted
from tests.helpers import REPO, run_cli, write_tiny_dataset

TINY = ["--model=BPR", "--dataset=tiny", "--state=WARNING", "--show_progress=False"]


def error_lines(proc):
    """The ``error:`` line and what follows it; asserts that no traceback was printed."""
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("error: "))
    return lines[start:]


def assert_input_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = error_lines(proc)
    assert 1 <= len(lines) <= 2, lines
    for needle in needles:
        assert needle in "\n".join(lines), lines


@pytest.fixture
def tiny(run_dir):
    write_tiny_dataset(str(run_dir / "data"))
    return ["--data_path=" + str(run_dir / "data")]


# --- subprocess: what a user types -------------------------------------------------------------
def test_unknown_model_is_one_line(run_dir):
    assert_input_error(run_cli(["--model=Popp", "--dataset=ml-100k"], run_dir), "unknown model 'Popp'", "Pop")


def test_unknown_dataset_names_the_missing_file(run_dir, tiny):
    proc = run_cli(["--model=BPR", "--dataset=nowhere"] + tiny, run_dir)
    assert_input_error(proc, "nowhere.inter")


def test_malformed_yaml_names_the_file(run_dir, tiny):
    (run_dir / "bad.yaml").write_text("epochs: [1, 2\nlearning_rate: 0.1\n")
    proc = run_cli(TINY + tiny + ["--config_files=bad.yaml"], run_dir)
    assert_input_error(proc, "bad.yaml")


def test_empty_yaml_names_the_file(run_dir, tiny):
    (run_dir / "empty.yaml").write_text("")
    proc = run_cli(TINY + tiny + ["--config_files=empty.yaml"], run_dir)
    assert_input_error(proc, "empty.yaml")


def test_header_only_inter_file_names_the_file(run_dir):
    folder = run_dir / "data" / "ho"
    folder.mkdir(parents=True)
    (folder / "ho.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n")
    proc = run_cli(["--model=BPR", "--dataset=ho", f"--data_path={run_dir / 'data'}", "--state=WARNING"], run_dir)
    assert_input_error(proc, "ho.inter", "no data rows")
    assert not (run_dir / "saved").exists() or not any((run_dir / "saved").rglob("*.pth"))


def test_repeated_flag_is_refused(run_dir, tiny):
    proc = run_cli(TINY + tiny + ["--epochs=1", "--epochs=2"], run_dir)
    assert_input_error(proc, "--epochs is given twice", "'1'", "'2'")
    proc = run_cli(["--model=BPR", "--model=Pop", "--dataset=tiny"] + tiny, run_dir)  # argparse would keep Pop
    assert_input_error(proc, "--model is given twice")


def test_recbole_type_error_while_building_the_model_is_an_input_error(run_dir, tiny):
    proc = run_cli(TINY + tiny + ["--embedding_size=abc"], run_dir)
    assert_input_error(proc, "TypeError", "building the model", "--debug")


def test_output_folder_that_cannot_exist_is_refused_before_training(run_dir, tiny):
    (run_dir / "afile").write_text("not a folder")
    proc = run_cli(TINY + tiny + ["--epochs=1", f"--checkpoint_dir={run_dir / 'afile' / 'ckpt'}"], run_dir)
    assert_input_error(proc, "afile")
    assert not (run_dir / "saved").exists()


def test_debug_flag_and_variable_show_the_traceback(run_dir, tiny):
    proc = run_cli(TINY + tiny + ["--embedding_size=abc", "--debug"], run_dir)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "TypeError" in proc.stderr
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", RECBOLE_EXT_DEBUG="1")
    proc = subprocess.run([sys.executable, os.path.join(REPO, "run_recbole.py"), "--model=Popp", "--dataset=tiny"],
                          cwd=run_dir, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "UnknownNameError" in proc.stderr


def test_run_hyper_input_errors_exit_2(run_dir):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    script = os.path.join(REPO, "run_hyper.py")
    proc = subprocess.run([sys.executable, script, "--model=BPR", "--dataset=ml-100k", "--params_file=nope.test"],
                          cwd=run_dir, env=env, capture_output=True, text=True, timeout=300)
    assert_input_error(proc, "nope.test")
    proc = subprocess.run([sys.executable, script, "--model=BPR", "--dataset=ml-100k", "--params_file=nope.test",
                           "--epochs=1", "--epochs=3"], cwd=run_dir, env=env, capture_output=True, text=True,
                          timeout=300)
    assert_input_error(proc, "--epochs is given twice")


def test_ctrl_c_exits_130_with_the_checkpoint_and_resume_command(run_dir, tiny):
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1")
    args = ["--model=BPR", "--dataset=tiny", "--state=INFO", "--show_progress=False", "--epochs=100000",
            "--eval_step=1", "--checkpoint_dir=saved"] + tiny
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "run_recbole.py")] + args, cwd=run_dir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in proc.stderr:  # RecBole logs to stderr; interrupt once a checkpoint has been written
            seen.append(line)
            if "epoch 2 training" in line:
                proc.send_signal(signal.SIGINT)
                break
        rest = proc.communicate(timeout=120)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, "".join(seen)[-2000:] + rest[-2000:]
    assert "Traceback" not in rest
    lines = [line for line in rest.splitlines() if line.startswith("interrupted")]
    assert len(lines) == 1, rest[-2000:]
    checkpoint = lines[0].split("last checkpoint: ")[1].split(";")[0]
    assert os.path.isfile(checkpoint)
    assert "resume with: python run_recbole.py " in lines[0] and f"--resume_checkpoint={checkpoint}" in lines[0]
    assert "--epochs=100000" in lines[0]
    assert not [p for p in (run_dir / "saved").rglob(".tmp-*")]  # nothing half-written


# --- in process: the boundary's decisions --------------------------------------------------------
def test_bug_inside_training_keeps_its_traceback(run_dir, tiny, monkeypatch):
    from recbole.model.general_recommender.bpr import BPR

    def broken(self, interaction):
        raise ValueError("a bug in calculate_loss")

    monkeypatch.setattr(BPR, "calculate_loss", broken)
    with pytest.raises(ValueError, match="a bug in calculate_loss"):
        run_recbole.main(TINY + tiny + ["--epochs=1", "--checkpoint_dir=saved"])


def test_input_errors_print_error_and_return_2(capsys):
    def body(error):
        def raise_it(args):
            raise error
        return raise_it

    assert cli.run_command(body(ConfigError("bad value for x: use 1")), [], "p.py") == 2
    assert capsys.readouterr().err == "error: bad value for x: use 1\n"
    assert cli.run_command(body(PermissionError(13, "Permission denied", "/ro/saved")), [], "p.py") == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "error: permission denied: /ro/saved" and "writable" in err[1] and len(err) == 2
    assert cli.run_command(body(FileNotFoundError(2, "No such file", "x.yaml")), [], "p.py") == 2
    assert capsys.readouterr().err.startswith("error: file not found: x.yaml\n")
    assert cli.run_command(lambda args: args, ["--a=1", "--debug"], "p.py") == ["--a=1"]  # --debug stripped


def test_debug_reraises(monkeypatch):
    def body(args):
        raise ConfigError("bad")

    with pytest.raises(ConfigError):
        cli.run_command(body, ["--debug"], "p.py")
    monkeypatch.setenv("RECBOLE_EXT_DEBUG", "1")
    with pytest.raises(ConfigError):
        cli.run_command(body, [], "p.py")


def test_interrupt_message(capsys):
    def body(args):
        raise RunInterrupted("stopped", checkpoint="/runs/saved/BPR-1.pth")

    args = ["--model=BPR", "--resume_checkpoint=old.pth", "--note=a b"]
    assert cli.run_command(body, args, "python run_recbole.py") == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "last checkpoint: /runs/saved/BPR-1.pth" in err
    assert "python run_recbole.py --model=BPR '--note=a b' --resume_checkpoint=/runs/saved/BPR-1.pth" in err

    def plain(args):
        raise KeyboardInterrupt

    assert cli.run_command(plain, [], "python run_recbole.py") == 130
    assert capsys.readouterr().err == "interrupted (Ctrl-C); no checkpoint was written\n"


def test_run_hyper_main_goes_through_the_boundary(capsys):
    assert run_hyper.main(["--model=BPR", "--dataset=ml-100k", "--params_file=nope.test"]) == 2
    assert "nope.test" in capsys.readouterr().err
