"""Run jobs of a GitHub Actions workflow here, the way a runner would.

Usage: python ci/run-workflow.py [--workflow FILE] [--cell NAME ...] JOB [JOB ...]

Each job runs in a fresh clone of this repository's HEAD: its services started as
containers (ports on 127.0.0.1 only) and waited on until healthy, then its steps in
order with the workflow's, the job's and the step's env plus CI=true and
GITHUB_ACTIONS=true; $GITHUB_OUTPUT and $GITHUB_STEP_SUMMARY are files. Of the actions,
checkout (the fresh clone), setup-python (a new virtualenv first on PATH) and
upload-/download-artifact (folders, with pattern and merge-multiple) are done here; any
other `uses:` stops the run with one line, so the workflow cannot grow a step nobody ran.
A job with a matrix runs once per cell, or only for the cells named by --cell.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
HEALTH_POLL_SECONDS = 0.2
LOCAL_ACTIONS = ("checkout", "setup-python", "upload-artifact", "download-artifact")


class JobError(Exception):
    """One line: which job and step failed, and how."""


def namespace(value: Any) -> Any:
    """Dicts as attribute namespaces (hyphens as underscores), for expressions."""
    if isinstance(value, dict):
        fields = {k.replace("-", "_"): namespace(v) for k, v in value.items()}
        return types.SimpleNamespace(**fields)
    return value


def evaluate(expression: str, contexts: dict[str, Any]) -> Any:
    """A GitHub expression: contexts, fromJSON, status functions, ==, &&, ||, !."""
    python = re.sub(r"\b([a-z_]+)-([a-z]+)\b", r"\1_\2", expression)
    python = python.replace("&&", " and ").replace("||", " or ")
    python = re.sub(r"!(?!=)", " not ", python)
    scope = {name: namespace(value) for name, value in contexts.items()}
    scope |= {
        "fromJSON": json.loads,
        "toJSON": json.dumps,
        "cancelled": lambda: False,
        "always": lambda: True,
        "success": lambda: contexts["job"]["status"] == "success",
        "failure": lambda: contexts["job"]["status"] != "success",
    }
    return eval(python, {"__builtins__": {}}, scope)  # noqa: S307 - this repository's workflow


def substitute(text: Any, contexts: dict[str, Any]) -> Any:
    """``text`` with each ${{ }} replaced; a value that is one expression keeps its type."""
    if not isinstance(text, str):
        return text
    whole = EXPRESSION.fullmatch(text.strip())
    if whole:
        return evaluate(whole.group(1), contexts)
    return EXPRESSION.sub(lambda m: str(evaluate(m.group(1), contexts)), text)


class Runner:
    def __init__(self, workflow: Path, cells: list[str]) -> None:
        self.workflow = yaml.safe_load(workflow.read_text())
        self.cells = cells
        self.work = Path(tempfile.mkdtemp(prefix="run-workflow-"))
        self.artifacts = self.work / "artifacts"
        self.artifacts.mkdir()
        self.outputs: dict[str, dict[str, Any]] = {}

    def run(self, names: list[str]) -> None:
        jobs = self.workflow["jobs"]
        for name in names:
            if name not in jobs:
                raise JobError(f"no job {name!r} in the workflow: choose from {', '.join(jobs)}")
            for index, cell in enumerate(self._cells(name, jobs[name])):
                self._job(name, jobs[name], cell, index)

    def _cells(self, name: str, job: dict[str, Any]) -> list[dict[str, Any]]:
        matrix = (job.get("strategy") or {}).get("matrix")
        if matrix is None:
            return [{}]
        include = substitute(matrix.get("include"), self._contexts({}, 0, job))
        if not isinstance(include, list) or not include:
            raise JobError(f"job {name}: its matrix expanded to nothing ({include!r})")
        if not self.cells:
            return include
        chosen = [c for c in include if c.get("session") in self.cells]
        unknown = set(self.cells) - {c.get("session") for c in include}
        if unknown:
            raise JobError(f"job {name}: no matrix cell {sorted(unknown)[0]!r}")
        return chosen

    def _contexts(self, cell: dict[str, Any], index: int, job: dict[str, Any]) -> dict[str, Any]:
        needs = {n: {"outputs": self.outputs.get(n, {})} for n in _list(job.get("needs"))}
        return {
            "matrix": cell,
            "strategy": {"job-index": index},
            "needs": needs,
            "steps": {},
            "job": {"status": "success"},
            "github": {"workflow": self.workflow.get("name", ""), "ref": "refs/heads/main"},
            "env": {},
        }

    def _job(self, name: str, job: dict[str, Any], cell: dict[str, Any], index: int) -> None:
        contexts = self._contexts(cell, index, job)
        title = substitute(job.get("name", name), contexts)
        print(f"run-workflow: job {name}: {title}", flush=True)
        workspace = self.work / f"{name}-{index}"
        env = {**os.environ, **self.workflow.get("env", {}), **job.get("env", {})}
        env |= {"CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(workspace)}
        env["GITHUB_STEP_SUMMARY"] = str(self.work / f"{name}-{index}.summary.md")
        services: list[str] = []
        deadline = time.monotonic() + 60 * float(job.get("timeout-minutes", 360))
        try:
            self._services(name, job.get("services") or {}, index, services)
            for number, step in enumerate(job["steps"], 1):
                label = step.get("name") or step.get("uses") or step.get("run", "").split("\n")[0]
                if "if" in step and not _holds(str(step["if"]), contexts):
                    continue
                try:
                    self._step(step, workspace, env, contexts, deadline)
                except JobError as exc:
                    contexts["job"]["status"] = "failure"
                    raise JobError(
                        f"job {name} ({title}), step {number} ({label}): {exc}"
                    ) from None
        finally:
            for container in services:
                subprocess.run(
                    ["docker", "rm", "-f", "-v", container], capture_output=True, check=False
                )
        outputs = {k: substitute(v, contexts) for k, v in (job.get("outputs") or {}).items()}
        self.outputs[name] = outputs
        print(f"run-workflow: job {name} passed", flush=True)

    def _step(
        self,
        step: dict[str, Any],
        workspace: Path,
        env: dict[str, str],
        contexts: dict[str, Any],
        deadline: float,
    ) -> None:
        with_ = {k: substitute(v, contexts) for k, v in (step.get("with") or {}).items()}
        if "uses" in step:
            action = step["uses"].split("@")[0].removeprefix("actions/")
            if action not in LOCAL_ACTIONS:
                raise JobError(f"`uses: {step['uses']}` is not run here: add it to run-workflow")
            getattr(self, "_" + action.replace("-", "_"))(workspace, env, with_)
            return
        output = Path(tempfile.mkstemp(dir=self.work, prefix="output-")[1])
        step_env = {
            **env,
            **{k: str(substitute(v, contexts)) for k, v in (step.get("env") or {}).items()},
        }
        step_env["GITHUB_OUTPUT"] = str(output)
        script = substitute(step["run"], contexts)
        remaining = deadline - time.monotonic()
        try:
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", script],
                cwd=workspace,
                env=step_env,
                timeout=max(remaining, 1),
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise JobError("the job's timeout-minutes ran out") from None
        if done.returncode != 0:
            raise JobError(f"`{script.strip()}` exited with {done.returncode}")
        if "id" in step:
            contexts["steps"][step["id"]] = {"outputs": _read_outputs(output)}

    def _checkout(self, workspace: Path, env: dict[str, str], with_: dict[str, Any]) -> None:
        done = subprocess.run(
            ["git", "clone", "--quiet", str(ROOT), str(workspace)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise JobError(f"checkout is a git clone of {ROOT}: {done.stderr.strip()}")

    def _setup_python(self, workspace: Path, env: dict[str, str], with_: dict[str, Any]) -> None:
        venv = self.work / f"python-{workspace.name}"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"

    def _upload_artifact(self, workspace: Path, env: dict[str, str], with_: dict[str, Any]) -> None:
        source = workspace / with_["path"]
        target = self.artifacts / str(with_["name"])
        files = [p for p in source.rglob("*") if p.is_file()] if source.exists() else []
        if not with_.get("include-hidden-files"):
            files = [
                p
                for p in files
                if not any(part.startswith(".") for part in p.relative_to(source).parts)
            ]
        if not files:
            if with_.get("if-no-files-found", "warn") == "error":
                raise JobError(f"no files to upload under {with_['path']}")
            return
        shutil.rmtree(target, ignore_errors=True)
        for path in files:
            (target / path.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target / path.relative_to(source))

    def _download_artifact(
        self, workspace: Path, env: dict[str, str], with_: dict[str, Any]
    ) -> None:
        pattern = with_.get("pattern") or with_.get("name") or "*"
        chosen = sorted(p for p in self.artifacts.iterdir() if fnmatch.fnmatch(p.name, pattern))
        if not chosen:
            raise JobError(f"no artifact matches {pattern!r}")
        base = workspace / with_.get("path", ".")
        for artifact in chosen:
            target = base if with_.get("merge-multiple") else base / artifact.name
            shutil.copytree(artifact, target, dirs_exist_ok=True)

    def _services(self, job: str, services: dict[str, Any], index: int, started: list[str]) -> None:
        """Start ``services`` and wait until each is healthy; ``started`` names them."""
        for name, service in services.items():
            container = f"run-workflow-{os.getpid()}-{job}-{index}-{name}"
            ports = [f"127.0.0.1:{p}" for p in service.get("ports", [])]
            command = ["docker", "run", "-d", "--name", container]
            command += [a for e in (service.get("env") or {}).items() for a in ("-e", "=".join(e))]
            command += [a for p in ports for a in ("-p", p)]
            command += [*shlex.split(service.get("options", "")), service["image"]]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise JobError(f"job {job}: service {name} did not start: {done.stderr.strip()}")
            started.append(container)
            self._wait_healthy(job, name, container, service.get("options", ""))

    def _wait_healthy(self, job: str, name: str, container: str, options: str) -> None:
        flags = dict(re.findall(r"--health-(interval|retries|timeout)[ =](\S+)", options))
        budget = _seconds(flags.get("interval", "5s")) * int(flags.get("retries", "3"))
        budget += _seconds(flags.get("timeout", "5s"))
        deadline = time.monotonic() + budget
        while True:
            status = subprocess.run(
                [
                    "docker",
                    "inspect",
                    "-f",
                    "{{if .State.Health}}{{.State.Health.Status}}{{end}}",
                    container,
                ],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            if status in ("healthy", ""):
                return
            if status == "unhealthy" or time.monotonic() > deadline:
                raise JobError(
                    f"job {job}: service {name} is {status or 'not healthy'} after {budget:.0f} s"
                )
            time.sleep(HEALTH_POLL_SECONDS)


def _holds(condition: str, contexts: dict[str, Any]) -> bool:
    """An ``if:``, with or without its ${{ }}."""
    wrapped = EXPRESSION.fullmatch(condition.strip())
    return bool(evaluate(wrapped.group(1) if wrapped else condition, contexts))


def _list(value: Any) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def _seconds(value: str) -> float:
    number = float(re.sub(r"[a-z]+$", "", value))
    return number * {"ms": 0.001, "m": 60, "h": 3600}.get(re.sub(r"^[\d.]+", "", value), 1)


def _read_outputs(path: Path) -> dict[str, str]:
    pairs = (line.partition("=") for line in path.read_text().splitlines() if "=" in line)
    return {key: value for key, _, value in pairs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python ci/run-workflow.py")
    parser.add_argument("--workflow", type=Path, default=ROOT / ".github/workflows/ci.yml")
    parser.add_argument("--cell", action="append", default=[], help="a matrix cell's session")
    parser.add_argument("jobs", nargs="+")
    args = parser.parse_args(argv)
    runner = Runner(args.workflow, args.cell)
    try:
        runner.run(args.jobs)
    except JobError as exc:
        print(f"run-workflow: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        shutil.rmtree(runner.work, ignore_errors=True)
    print(f"run-workflow: {len(args.jobs)} jobs passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
