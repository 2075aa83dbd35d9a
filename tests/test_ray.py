"""Batch runs on Ray Data: equal to local batch runs, exactly once through worker loss and resume, bad input.

Tests that run Ray start real Ray nodes on loopback (``ray start``, stopped by
their own process ids afterwards, even when a test fails) and drive them from
subprocesses with timeouts, so nothing here can hang the suite.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from raycluster import Node, head_node, start_node, worker_env

import promptask
import promptask.cli
from promptask.batch import run_file

pytest.importorskip("ray", reason="needs the ray extra: pip install 'promptask[ray]'")

from promptask import ray as on_ray


def write_rows(path: Path, count: int, start: int = 0) -> Path:
    with path.open("w") as handle:
        for i in range(start, start + count):
            handle.write(json.dumps({"id": f"r{i}", "text": f"Review {i}: {'good' if i % 2 else 'bad'} phone"}) + "\n")
    return path


def driver(script: str, timeout: float = 240, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a driver script in its own process (bounded by ``timeout``)."""
    return subprocess.run([sys.executable, "-c", script], env=worker_env(**env), capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


def ray_run_script(source: Path, out: Path, address: str, backend: str = "labeller", **options: Any) -> str:
    return f"""
import json, promptask, promptask.ray, ray_backends
summary = promptask.ray.run(promptask.tasks.sentiment, {str(source)!r}, {str(out)!r}, address={address!r},
                            backend=ray_backends.{backend}, cache=False, **{options!r})
print(json.dumps({{"done": summary.done, "failed": summary.failed, "already": summary.already_done,
                  "parts": summary.parts, "startup_s": summary.startup_s}}))
"""


def by_id(records: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    ids = Counter(json.dumps(r["id"]) for r in records)
    assert max(ids.values(), default=1) == 1, f"repeated ids: {[i for i, n in ids.items() if n > 1][:5]}"
    return {r["id"]: r for r in records}


def local_records(source: Path, tmp_path: Path) -> dict[Any, dict[str, Any]]:
    import ray_backends

    out = tmp_path / "local.jsonl"
    run_file(promptask.tasks.sentiment, source, out, backend=ray_backends.labeller(), cache=False, log=io.StringIO())
    return by_id([json.loads(line) for line in out.read_text().splitlines()])


@pytest.fixture(scope="module")
def head() -> Iterator[Node]:
    with head_node(cpus=3, store_mb=300) as node:
        yield node


# ------------------------------------------------------------------------------------------ without Ray running


def test_a_missing_ray_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    real_import = builtins.__import__

    def no_ray(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}", name=name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    source = write_rows(tmp_path / "in.jsonl", 2)
    code = promptask.cli.main(["run", "sentiment", "--file", str(source), "--out", str(tmp_path / "out"), "--ray"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [
        "promptask: error: batch runs on Ray need Ray, which is not installed; "
        "install it with: pip install 'promptask[ray]'"
    ]


def test_settling_parts_drops_temporary_cut_off_duplicate_and_error_rows(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()

    def record(i: int, ok: bool = True) -> dict[str, Any]:
        return {"id": f"r{i}", "row": i, **({"output": {"label": "positive"}} if ok else {"error": "bad"})}

    on_ray._write_part(out, "part-a.jsonl", [record(1), record(2, ok=False)], "jsonl")
    on_ray._write_part(out, "part-b.parquet", [record(1), record(3)], "parquet")  # r1 again: a redone batch
    (out / "part-c.jsonl").write_text(json.dumps(record(4)) + "\n" + json.dumps(record(5))[:20])  # cut off
    (out / ".part-d.jsonl.123.tmp").write_text(json.dumps(record(6)) + "\n")  # never renamed
    log = io.StringIO()
    done = on_ray._settle(out, log, keep_errors=False)
    assert sorted(done) == ['"r1"', '"r3"']
    assert sorted(p.name for p in out.iterdir()) == ["part-a.jsonl", "part-b.parquet", "part-c.jsonl.incomplete"]
    assert sorted(r["id"] for r in on_ray.read_output(out)) == ["r1", "r3"]
    assert "part-c.jsonl: cut off; set aside" in log.getvalue()
    on_ray._write_part(out, "part-e.jsonl", [record(2, ok=False)], "jsonl")
    on_ray._settle(out, log, keep_errors=True)  # the end of a run keeps error rows, once each
    assert sorted(r["id"] for r in on_ray.read_output(out)) == ["r1", "r2", "r3"]


def test_ray_flags_need_a_file_and_bad_settings_are_one_line(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert promptask.cli.main(["run", "sentiment", "--ray"]) == 2
    assert "--ray needs --file INPUT and --out OUTPUT_DIR" in capsys.readouterr().err
    source = write_rows(tmp_path / "in.jsonl", 2)
    args = ["run", "sentiment", "--file", str(source), "--out", str(tmp_path / "o"), "--ray", "--workers", "0"]
    assert promptask.cli.main(args) == 2
    assert capsys.readouterr().err.count("\n") == 1


# ------------------------------------------------------------------------------------------ on real Ray nodes


@pytest.mark.slow
def test_200_rows_on_ray_equal_a_local_batch_run_and_map_dataset_adds_outputs(head: Node, tmp_path: Path) -> None:
    source = write_rows(tmp_path / "in.jsonl", 200)
    out = tmp_path / "out"
    result = driver(ray_run_script(source, out, head.address, workers=2, batch_size=25))
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.splitlines()[-1])
    assert (summary["done"], summary["failed"]) == (200, 0) and summary["parts"] >= 200 // 25
    assert "sentiment: 200 rows: 200 done (0 cached, 0 already in the output), 0 failed" in result.stderr
    assert by_id(on_ray.read_output(out)) == local_records(source, tmp_path)

    mapped = driver(f"""
import json, ray, promptask, promptask.ray, ray_backends
ray.init(address={head.address!r}, log_to_driver=False)
rows = ray.data.from_items([{{"text": "great"}}, {{"text": "awful"}}, {{"txt": "no text field"}}])
out = promptask.ray.map_dataset(promptask.tasks.sentiment, rows, backend=ray_backends.labeller, cache=False).take_all()
print(json.dumps(out))
""")
    assert mapped.returncode == 0, mapped.stderr[-3000:]
    rows = {row.get("text"): row for row in json.loads(mapped.stdout.splitlines()[-1])}
    assert json.loads(rows["great"]["output"])["label"] in {"positive", "negative", "neutral"}
    assert rows["great"]["error"] is None and rows["great"]["cached"] is False
    assert "text" in rows[None]["error"] and rows[None]["output"] is None  # the missing input, named


@pytest.mark.slow
def test_resume_after_kill_9_writes_each_id_exactly_once(head: Node, tmp_path: Path) -> None:
    source = write_rows(tmp_path / "in.jsonl", 120)
    out = tmp_path / "out"
    script = ray_run_script(source, out, head.address, backend="slow_labeller", batch_size=10, output_format="parquet")
    first = subprocess.Popen([sys.executable, "-c", script], env=worker_env(RAY_TEST_DELAY_S="0.1"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while len(list(out.glob("part-*.parquet"))) < 3 and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.1)
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
    written = len(on_ray.read_output(out))
    assert 30 <= written < 120, "the kill must land mid-run"
    (out / ".part-x.parquet.999.tmp").write_bytes(b"PAR1 cut off before its rename")
    (out / "part-y.parquet").write_bytes(b"PAR1 cut off")  # a part that does not read whole is never counted

    second = driver(script, RAY_TEST_DELAY_S="0")
    assert second.returncode == 0, second.stderr[-3000:]
    summary = json.loads(second.stdout.splitlines()[-1])
    assert (summary["already"], summary["done"]) == (written, 120 - written)
    assert f"{120 - written} done (0 cached, {written} already in the output)" in second.stderr
    assert "part-y.parquet: cut off; set aside, its rows run again" in second.stderr
    assert by_id(on_ray.read_output(out)) == local_records(source, tmp_path)


@pytest.mark.slow
def test_bad_input_is_reported_by_file_and_line(head: Node, tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"id": 1, "text": "fine"}\n{"id": 2, "text": \n{"id": 3, "text": "caf\xe9"}\n'
                       b'{"id": 4, "body": "no text"}\n')  # fmt: skip
    out = tmp_path / "out"
    cli = [sys.executable, "-m", "promptask", "run", "sentiment", "--ray", "--ray-address", head.address,
           "--backend", 'scripted:{"label": "neutral"}', "--cache", "off", "--no-progress"]  # fmt: skip

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*cli, *args], env=worker_env(), capture_output=True, text=True, timeout=240,
                              check=False)  # fmt: skip

    result = run("--file", str(source), "--out", str(out))
    assert result.returncode == 1, result.stderr  # row 4 failed: its input is missing
    assert f"{source}:2: not valid JSON" in result.stderr
    assert f"{source}:3: not valid UTF-8; skipped" in result.stderr
    assert "Traceback" not in result.stderr
    records = by_id(on_ray.read_output(out))
    assert records[1]["output"] == {"label": "neutral"}
    assert "text" in records[4]["error"] and "output" not in records[4]
    assert "4 rows: 1 done (0 cached, 0 already in the output), 1 failed, 2 malformed" in result.stderr

    strict = run("--file", str(source), "--out", str(tmp_path / "strict"), "--strict")
    assert strict.returncode == 2 and f"{source}:2: not valid JSON" in strict.stderr
    assert strict.stderr.count("\n") == 1 and not (tmp_path / "strict").exists()

    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.csv").write_text("id,text\nx,one\ny,two\n")
    (folder / "b.jsonl").write_text('{"id": "z", "text": "three"}\n{"id": "x", "text": "again"}\n')
    repeated = run("--file", str(folder), "--out", str(tmp_path / "o2"))
    assert repeated.returncode == 2
    assert repeated.stderr.strip() == (f"promptask: error: {folder / 'b.jsonl'}:2: id 'x' repeats "
                                       f"{folder / 'a.csv'}:2; ids must be unique")  # fmt: skip
    assert not list((tmp_path / "o2").glob("part-*"))


@pytest.mark.slow
def test_the_id_pass_reads_the_same_rows_in_the_driver_as_in_ray_read_tasks(head: Node, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(b'{"id": 1, "text": "fine"}\n{"id": 2, "text": \n{"id": 3, "text": "caf\xe9"}\n')
    (folder / "b.csv").write_text("id,text\nx,one\ny\nz,three\n")
    pq.write_table(pa.table({"text": ["p", "q"]}), folder / "c.parquet")
    (folder / "notes.txt").write_text("not an input file\n")
    result = driver(f"""
import io, json, ray, promptask.ray as on_ray
ray.init(address={head.address!r}, log_to_driver=False)
files = on_ray._datasource({str(folder)!r}, None)
dataset = on_ray._dataset(files)
plans = {{}}
for here in (True, False):
    summary, log = on_ray.RaySummary(), io.StringIO()
    todo = on_ray._plan(on_ray._plan_tables(files, dataset, here=here), summary, {{'"x"': "part"}}, False, log)
    plans[here] = [todo, summary.total, summary.malformed, summary.already_done, sorted(log.getvalue().splitlines())]
print(json.dumps(list(plans.values())))
""")
    assert result.returncode == 0, result.stderr[-3000:]
    here, in_ray = json.loads(result.stdout.splitlines()[-1])
    assert here == in_ray
    assert here[:4] == [4, 8, 3, 1]  # 3 + 3 + 2 rows; 3 malformed; x already done; 1, z and the two Parquet rows
    assert [line.split(": ")[1] for line in here[4]] == [f"{folder / 'a.jsonl'}:2", f"{folder / 'a.jsonl'}:3",
                                                         f"{folder / 'b.csv'}:3"]  # fmt: skip
    assert "not valid JSON" in here[4][0] and "not valid UTF-8" in here[4][1] and "expected 2 fields" in here[4][2]


@pytest.mark.slow
def test_two_node_cluster_loses_the_second_nodes_workers_mid_run(head: Node, tmp_path: Path) -> None:
    second = start_node(cpus=2, store_mb=200, head_address=head.address)
    try:
        source = write_rows(tmp_path / "in.jsonl", 300)
        out = tmp_path / "out"
        script = ray_run_script(source, out, head.address, backend="slow_labeller", workers=4, batch_size=10)
        job = subprocess.Popen([sys.executable, "-c", script], env=worker_env(RAY_TEST_DELAY_S="0.05"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        try:
            deadline = time.monotonic() + 180
            while len(list(out.glob("part-*"))) < 5 and time.monotonic() < deadline and job.poll() is None:
                time.sleep(0.1)
            assert job.poll() is None, "the kill must land mid-run"
            victims = second.workers()
            assert any("MapWorker" in title for title in victims.values()), f"no actor on the second node: {victims}"
            for pid in victims:
                os.kill(pid, signal.SIGKILL)
            stdout, stderr = job.communicate(timeout=240)
        finally:
            if job.poll() is None:
                job.kill()
                job.wait()
        assert job.returncode == 0, stderr[-3000:]
        summary = json.loads(stdout.splitlines()[-1])
        assert (summary["done"], summary["failed"]) == (300, 0)
        assert by_id(on_ray.read_output(out)) == local_records(source, tmp_path)
    finally:
        second.stop()


@pytest.mark.slow
def test_24_rows_on_the_default_model_from_the_cli_equal_a_local_batch_run(tmp_path: Path) -> None:
    source = write_rows(tmp_path / "in.jsonl", 24)
    cli = [sys.executable, "-m", "promptask", "run", "sentiment", "--file", str(source), "--cache", "off"]
    local = subprocess.run([*cli, "--out", str(tmp_path / "local.jsonl")], env=worker_env(), capture_output=True,
                           text=True, timeout=300, check=False)  # fmt: skip
    assert local.returncode == 0, local.stderr[-3000:]
    # No --ray-address: the CLI starts a local Ray of its own, and stops it after.
    on = subprocess.run([*cli, "--out", str(tmp_path / "out"), "--ray", "--cpus-per-worker", "2", "--batch-size", "8"],
                        env=worker_env(), capture_output=True, text=True, timeout=400, check=False)  # fmt: skip
    assert on.returncode == 0, on.stderr[-3000:]
    assert "sentiment: 24 rows: 24 done (0 cached, 0 already in the output), 0 failed, 0 malformed" in on.stderr
    expected = by_id([json.loads(line) for line in (tmp_path / "local.jsonl").read_text().splitlines()])
    # cached_tokens counts the KV-cache reuse of whichever row a worker ran before: it depends on how Ray
    # split the blocks, not on the row, so it is left out of the comparison.
    assert without_cached_tokens(by_id(on_ray.read_output(tmp_path / "out"))) == without_cached_tokens(expected)
    assert {r["output"]["label"] for r in expected.values()} <= {"positive", "negative", "neutral"}


def without_cached_tokens(records: dict[Any, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {key: {**r, "usage": {k: v for k, v in r["usage"].items() if k != "cached_tokens"}}
            for key, r in records.items()}  # fmt: skip
