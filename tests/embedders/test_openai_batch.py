"""The Batch API client: the JSONL format and its limits (pure functions, table-driven), and the
real ``openai`` SDK against the local server's files and batches endpoints (statuses, result
and error files, expiry, cancel, polling waits, usage at the batch price)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types import Batch, FileObject

from tasks.embedders.base import Usage
from tasks.embedders.openai_batch import (
    MAX_BYTES_PER_FILE,
    MAX_INPUTS_PER_BATCH,
    MAX_REQUESTS_PER_FILE,
    BatchLimits,
    OpenAIBatchClient,
    group_lines,
    parse_results,
    request_line,
)
from tasks.errors import EmbeddingError
from tests.fakes.openai_server import FakeOpenAIServer, count_tokens, fake_vector
from tests.index.helpers import fake_openai

DIMS = 8


def client(
    server: FakeOpenAIServer, sleeps: list[float] | None = None, **kw: Any
) -> OpenAIBatchClient:
    embedder = fake_openai(server.base_url, dimensions=DIMS, max_request_inputs=3)
    recorder = sleeps if sleeps is not None else []
    return OpenAIBatchClient(
        embedder,
        poll_interval_s=kw.get("poll_interval_s", 0.0),
        poll_max_interval_s=kw.get("poll_max_interval_s", 0.0),
        sleep=recorder.append,
    )


def submit(c: OpenAIBatchClient, texts: list[str]) -> Batch:
    lines = c.lines(texts, c.embedder.count_tokens(texts))
    return c.submit(b"".join(c.encode(texts, s, e, cid) for cid, s, e in lines))


def finish(c: OpenAIBatchClient, batch: Batch) -> Batch:
    done: list[Batch] = []
    c.wait([batch.id], done.append)
    return done[0]


# --- the file format and its limits (pure) ---------------------------------------------------


def test_documented_limits() -> None:
    assert (MAX_REQUESTS_PER_FILE, MAX_INPUTS_PER_BATCH) == (50_000, 50_000)
    assert MAX_BYTES_PER_FILE <= 200 * 1024 * 1024


@pytest.mark.parametrize(
    ("sizes", "inputs", "limits", "files"),
    [
        ([10] * 5, [1] * 5, BatchLimits(), [(0, 5)]),
        ([10] * 5, [1] * 5, BatchLimits(max_requests=2), [(0, 2), (2, 4), (4, 5)]),
        ([40, 40, 40], [1, 1, 1], BatchLimits(max_bytes=100), [(0, 2), (2, 3)]),
        ([10] * 4, [3, 3, 3, 3], BatchLimits(max_inputs=6), [(0, 2), (2, 4)]),
        ([10] * 4, [2048] * 4, BatchLimits(), [(0, 4)]),
        ([10] * 30, [2048] * 30, BatchLimits(), [(0, 24), (24, 30)]),  # 50,000 inputs a batch
        ([], [], BatchLimits(), []),
    ],
)
def test_group_lines(
    sizes: list[int], inputs: list[int], limits: BatchLimits, files: list[tuple[int, int]]
) -> None:
    assert group_lines(sizes, inputs, limits) == files


def test_a_line_over_a_limit_is_a_bug_not_a_batch() -> None:
    with pytest.raises(ValueError, match="over the per-batch limits"):
        group_lines([300], [1], BatchLimits(max_bytes=100))


def test_request_line_shape() -> None:
    line = request_line("r7", "text-embedding-3-small", ["a", "b"], 8)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {
        "custom_id": "r7",
        "method": "POST",
        "url": "/v1/embeddings",
        "body": {
            "model": "text-embedding-3-small",
            "input": ["a", "b"],
            "encoding_format": "float",
            "dimensions": 8,
        },
    }


def test_parse_results_reads_output_and_error_lines() -> None:
    text = "\n".join(
        json.dumps(x)
        for x in [
            {
                "id": "batch_req_1",
                "custom_id": "r1",
                "response": {
                    "status_code": 200,
                    "request_id": "req_1",
                    "body": {
                        "object": "list",
                        "data": [
                            {"object": "embedding", "index": 1, "embedding": [0.0, 1.0]},
                            {"object": "embedding", "index": 0, "embedding": [1.0, 0.0]},
                        ],
                        "usage": {"prompt_tokens": 5, "total_tokens": 5},
                    },
                },
                "error": None,
            },
            {
                "id": "batch_req_2",
                "custom_id": "r2",
                "response": {
                    "status_code": 400,
                    "request_id": "req_2",
                    "body": {"error": {"message": "bad input", "type": "invalid_request_error"}},
                },
                "error": None,
            },
            {
                "id": "batch_req_3",
                "custom_id": "r3",
                "response": None,
                "error": {"code": "batch_expired", "message": "window expired"},
            },
        ]
    )
    out = parse_results(text + "\n")
    assert out["r1"].vectors == [[1.0, 0.0], [0.0, 1.0]] and out["r1"].tokens == 5
    assert (out["r2"].status, out["r2"].code, out["r2"].message) == (
        400,
        "invalid_request_error",
        "bad input",
    )
    assert (out["r3"].vectors, out["r3"].status, out["r3"].code) == (None, None, "batch_expired")
    with pytest.raises(EmbeddingError, match="not a batch result"):
        parse_results('{"no": "custom id"}')


# --- the real SDK against the local server ---------------------------------------------------


def test_lines_pack_like_the_sync_path(openai_server: FakeOpenAIServer) -> None:
    c = client(openai_server)
    counts = [1] * 7
    assert [(s, e) for _, s, e in c.lines(["x"] * 7, counts)] == c.embedder.pack(counts)


def test_submit_poll_download(openai_server: FakeOpenAIServer) -> None:
    c = client(openai_server)
    texts = [f"text number {i}" for i in range(7)]
    batch = submit(c, texts)
    assert batch.status == "validating" and batch.endpoint == "/v1/embeddings"
    assert batch.completion_window == "24h"
    upload = openai_server.files[batch.input_file_id]
    assert upload.purpose == "batch"
    assert [len(json.loads(x)["body"]["input"]) for x in upload.content.splitlines()] == [3, 3, 1]

    done = finish(c, batch)
    assert done.status == "completed" and done.output_file_id and done.error_file_id is None
    assert done.request_counts is not None and done.request_counts.completed == 3
    # validating -> in_progress -> finalizing -> completed, one step per poll
    assert list(openai_server.batches[batch.id].times) == ["in_progress", "finalizing", "completed"]
    got = c.results(done)
    for line in got.values():
        c.bill(line)
    vectors = [v for cid in ("r0", "r1", "r2") for v in got[cid].vectors or []]
    assert vectors == [fake_vector(t, DIMS) for t in texts]
    tokens = sum(count_tokens(t) for t in texts)
    assert c.embedder.usage == Usage(3, 7, tokens, tokens)  # all of it at the batch price
    assert c.embedder.usage.cost_usd(0.02, 0.5) == pytest.approx(tokens * 0.01 / 1e6)
    assert openai_server.requests == []  # no synchronous call


def test_server_shapes_validate_against_the_sdk_models(openai_server: FakeOpenAIServer) -> None:
    batch = submit(client(openai_server), ["a", "b"])
    fake = openai_server.batches[batch.id].to_json()
    assert Batch.model_validate(fake).id == batch.id  # strict validation, not just construct
    FileObject.model_validate(openai_server.files[batch.input_file_id].to_json())


def test_polling_backs_off_exponentially(openai_server: FakeOpenAIServer) -> None:
    sleeps: list[float] = []
    c = client(openai_server, sleeps, poll_interval_s=1.0, poll_max_interval_s=4.0)
    openai_server.batch_script = [
        "validating",
        "in_progress",
        "in_progress",
        "in_progress",
        "in_progress",
        "finalizing",
        "completed",
    ]
    done = finish(c, submit(c, ["a"]))
    assert done.status == "completed"
    assert sleeps == [1.0, 2.0, 4.0, 4.0, 4.0]  # one wait between polls, doubling, capped


def test_failed_lines_land_in_the_error_file(openai_server: FakeOpenAIServer) -> None:
    c = client(openai_server)
    openai_server.reject_containing = {"POISON"}
    texts = ["fine 0", "fine 1", "fine 2", "a POISON one", "fine 4"]
    done = finish(c, submit(c, texts))
    assert done.status == "completed" and done.output_file_id and done.error_file_id
    got = c.results(done)
    assert got["r0"].vectors is not None
    assert got["r1"].vectors is None and got["r1"].status == 400  # the whole line fails
    for line in got.values():
        c.bill(line)
    assert c.embedder.usage.inputs == 3  # only the successful line is billed


def test_expiry_keeps_what_finished(openai_server: FakeOpenAIServer) -> None:
    c = client(openai_server)
    openai_server.batch_script = ["validating", "in_progress", "expired"]
    openai_server.batch_complete_before_end = 1
    done = finish(c, submit(c, [f"t{i}" for i in range(7)]))
    assert done.status == "expired" and done.expired_at is not None
    got = c.results(done)
    assert got["r0"].vectors is not None
    assert {got[k].code for k in ("r1", "r2")} == {"batch_expired"}


def test_failed_batch_has_errors_and_no_files(openai_server: FakeOpenAIServer) -> None:
    c = client(openai_server)
    openai_server.batch_script = ["validating", "failed"]
    done = finish(c, submit(c, ["a", "b"]))
    assert done.status == "failed" and done.output_file_id is None
    assert done.errors is not None and done.errors.data
    assert done.errors.data[0].code == "token_limit_exceeded"
    assert c.results(done) == {}


def test_cancel(openai_server: FakeOpenAIServer) -> None:
    c = client(openai_server)
    openai_server.batch_hold = True
    batch = submit(c, ["a", "b", "c", "d"])
    assert c.retrieve(batch.id).status == "in_progress"
    assert c.cancel(batch.id).status == "cancelling"
    done = finish(c, batch)
    assert done.status == "cancelled" and done.cancelled_at is not None
    assert {r.code for r in c.results(done).values()} == {"batch_cancelled"}


def test_unknown_batch_is_a_clear_error(openai_server: FakeOpenAIServer) -> None:
    with pytest.raises(EmbeddingError, match="HTTP 404"):
        client(openai_server).retrieve("batch_nope")
