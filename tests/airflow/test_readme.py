"""The README's commands work as written: run with bash from the repository root in a user's
environment (without the AIRFLOW_* and PIPELINE_* variables this test session sets), they exit 0
and print what the README says. Every section that calls the airflow CLI first sets the
Makefile's variables with `eval "$(make -s env)"`. Commands that take minutes or need what a test
here lacks (NOT_RUN) are checked only against their `--help`."""

from __future__ import annotations

import os
import re
import subprocess
import textwrap

from conftest import REPO

README = REPO / "README.md"
EVAL_ENV = 'eval "$(make -s env)"'
# bash blocks not run: a DAG run or the test suite (minutes), a running Airflow or TF Serving,
# the compose stack, a file of the reader's own
NOT_RUN = ("make demo", "make test", "dags test", "backfill", "curl ", "docker ", "trips.parquet", "penguins")
EXAMPLES = ("taxi_fare", "taxi_tips", "taxi_trip_length")
# what the README says these commands print
PRINTS = {"dags list --local": EXAMPLES, "dags list-import-errors --local": ("No data found",),
          "pipeline_lib.preflight": ("preflight ok",)}
# `<venv python> -m pipeline_lib.<module> [subcommand] [arguments]`, as the README writes them
CLI = re.compile(r"(\.venv-(?:airflow|ml)/bin/python) -m (pipeline_lib[\w.]*)((?: +[^\s`]+)*)")


def user_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PIPELINE"))}


def bash(script: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], cwd=REPO, env=user_env(),
                          capture_output=True, text=True, timeout=600, check=False)


def sections() -> dict[str, str]:
    """The README's text by `## ` section."""
    parts = re.split(r"^## (.+)$", README.read_text(), flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def bash_blocks() -> list[str]:
    """The README's ```bash blocks, those inside a list item dedented."""
    blocks = re.finditer(r"^( *)```bash\n(.*?)^\1```$", README.read_text(), re.DOTALL | re.MULTILINE)
    return [textwrap.dedent(m[2]) for m in blocks]


def test_make_env_gives_a_shell_the_variables_make_gives_its_recipes():
    bare = ["env", "-i", f"PATH={os.environ['PATH']}", f"HOME={os.environ['HOME']}"]

    def variables(command: list[str]) -> dict[str, str]:
        out = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True).stdout
        pairs = dict(line.split("=", 1) for line in out.splitlines())
        return {k: v for k, v in pairs.items() if not k.startswith(("MAKE", "MFLAGS", "_"))}

    recipe = variables([*bare, "make", "-s", "--eval", "_probe: ; @env", "_probe"])
    shell = variables([*bare, "bash", "-c", f"{EVAL_ENV} && env"])
    assert shell == recipe
    assert shell["AIRFLOW_HOME"] == str(REPO / ".airflow")
    named = set(re.findall(r"`(AIRFLOW_\w+)", sections()["Configuration"]))
    assert "AIRFLOW__CORE__DAGS_FOLDER" in named and named <= shell.keys(), "the variables the README names"


def test_every_airflow_cli_example_sets_the_variables_first():
    for title, text in sections().items():
        calls = [m.start() for m in re.finditer(r"\.venv-airflow/bin/airflow ", text)]
        if calls:
            assert EVAL_ENV in text and text.index(EVAL_ENV) < calls[0], f"section {title!r}"
    text = README.read_text()
    assert "list-import-errors" in text and not re.findall(r"list-import-errors(?! --local)", text)


def test_the_readme_bash_blocks_that_run_offline_run_as_written():
    """Each block that NOT_RUN leaves (`<name>`: each example pipeline) exits 0 printing what the
    README says; those that PRINTS names are among them."""
    ran = set()
    for block in bash_blocks():
        if any(c in block for c in NOT_RUN):
            continue
        for script in [block.replace("<name>", n) for n in EXAMPLES] if "<name>" in block else [block]:
            assert not re.search(r"<[\w ]+>", script), f"a placeholder the test cannot fill:\n{script}"
            done = bash(script)
            assert done.returncode == 0, f"{script}\n{done.stdout}{done.stderr}"
            for command, printed in PRINTS.items():
                if command in script:
                    ran.add(command)
                    for text in printed:
                        assert text in README.read_text() and text in done.stdout, f"{script}\n{done.stdout}"
    assert ran == set(PRINTS)


def test_the_readme_command_lines_take_the_arguments_it_gives_them():
    """Every `python -m pipeline_lib.<module> [subcommand]` the README shows answers `--help`
    listing each option the README passes it (those that take minutes are not run)."""
    wanted: dict[tuple[str, ...], set[str]] = {}
    for python, module, args in CLI.findall(README.read_text()):
        first = args.split()[0] if args.split() else ""
        for sub in first.split("|") if re.fullmatch(r"[a-z][\w|-]*", first) else [""]:
            wanted.setdefault((python, module, sub), set()).update(re.findall(r"--[\w-]+", args))
    assert {m for _, m, _ in wanted} >= {"pipeline_lib.serving", "pipeline_lib.report", "pipeline_lib.preflight"}
    for (python, module, sub), options in wanted.items():
        done = bash(f"{python} -m {module} {sub} --help")
        assert done.returncode == 0, f"{module} {sub}: {done.stderr}"
        assert all(o in done.stdout for o in options), f"{module} {sub} --help lacks one of {options}"
