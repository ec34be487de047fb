"""The policy wire is hostile input: the codec, the two remote-code exploits, admission and fairness of `rocket serve`."""
from __future__ import annotations

import contextlib
import pickle
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import msgpack
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect
from websockets.sync.server import serve

from rocket_core.errors import RocketError
from rocket_core.eval.client import PolicyClient, PolicyError, health
from rocket_core.eval.server import FairQueue, Limits, PolicyServer, Strikes, is_loopback, serve_callable
from rocket_core.eval.wire import MAX_NDIM, PROTOCOL_VERSION, WireError, packb, unpackb
from tests.robustness.harness import assert_one_line_error, run_rocket

META = {"vla": "scripted", "num_images": 1, "state_dim": 2, "action_dim": 3, "chunk_size": 4, "cameras": ["a"]}
TOKEN = "a-shared-secret-of-32-characters"
DTYPES = [np.bool_, np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64,
          np.float16, np.float32, np.float64, np.complex64, np.complex128]


class _OpenFile:
    """Unpickling this creates `path`: the stand-in for a shell command run by the receiver."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def _exploit(marker: Path) -> dict[bytes, Any]:
    """The issue's payload: an object array in msgpack-numpy's layout carrying a pickle."""
    return {b"nd": True, b"type": "|O", b"kind": b"O", b"shape": [1], b"data": pickle.dumps(_OpenFile(marker))}


def _obs(**changes: Any) -> dict[str, Any]:
    return {"images": [np.zeros((8, 8, 3), np.uint8)], "state": np.zeros(2, np.float32), "task": "reach", **changes}


def _scripted(obs: Any) -> np.ndarray:
    return np.ones((4, 3))


# ---- the codec ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_codec_round_trips_every_allowed_dtype(dtype: type) -> None:
    values = (np.arange(24) % 3).astype(dtype).reshape(2, 3, 4)
    swapped = values.astype(values.dtype.newbyteorder(">"))
    back = unpackb(packb({"x": values, "big_endian": swapped, "empty": np.zeros((0, 5), dtype)}))
    for got in (back["x"], back["big_endian"]):
        assert got.dtype == values.dtype and got.shape == (2, 3, 4) and np.array_equal(got, values)
        assert got.flags.writeable and got.dtype.isnative  # torch takes it without a warning
    assert back["empty"].shape == (0, 5)


def test_codec_refuses_object_arrays_both_ways(tmp_path: Path) -> None:
    live = tmp_path / "live"
    pickle.loads(pickle.dumps(_OpenFile(live)))  # the payload is real: unpickling it writes a file
    assert live.exists()
    marker = tmp_path / "pwned"
    for raw_keys in (True, False):
        payload = _exploit(marker) if raw_keys else {k.decode(): v for k, v in _exploit(marker).items()}
        with pytest.raises(WireError, match="only bool and numeric arrays"):
            unpackb(msgpack.packb({"obs": {"state": payload}}, use_bin_type=True))
    with pytest.raises(WireError, match="only bool and numeric"):
        packb({"x": np.array([{"a": 1}], dtype=object)})
    assert not marker.exists()


@pytest.mark.parametrize("array, fragment", [
    ({"shape": [1 << 40, 1 << 40], "data": b""}, "shape"),
    ({"shape": [4], "data": b"\0" * 15}, "do not match"),
    ({"shape": [-1], "data": b"\0" * 4}, "shape"),
    ({"shape": [1] * (MAX_NDIM + 1), "data": b"\0" * 4}, "shape"),
    ({"shape": "4", "data": b"\0" * 16}, "shape"),
    ({"shape": [1], "data": [0, 0, 0, 0]}, "raw bytes"),
    ({"type": "V4", "kind": b"V", "shape": [1], "data": b"\0" * 4}, "dtype"),
    ({"type": "<M8[s]", "shape": [1], "data": b"\0" * 8}, "dtype"),
    ({"type": [["a", "<f4"]], "shape": [1], "data": b"\0" * 4}, "dtype"),
], ids=["huge", "short-data", "negative", "too-many-dims", "shape-str", "data-list", "void", "datetime", "struct"])
def test_codec_refuses_malformed_arrays(array: dict[str, Any], fragment: str) -> None:
    message = {b"nd": True, b"type": "<f4", b"kind": b"", **{k.encode(): v for k, v in array.items()}}
    with pytest.raises(WireError, match=fragment):
        unpackb(msgpack.packb({"x": message}, use_bin_type=True))


def test_codec_refuses_garbage_in_one_line() -> None:
    for data in (b"\xc1garbage", b"\x92\x01", b"\x91" * 100_000):
        with pytest.raises(WireError) as err:
            unpackb(data)
        assert "\n" not in str(err.value)


# ---- the two exploits --------------------------------------------------------------------------------


def test_server_refuses_a_pickle_in_the_observation(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with serve_callable(META, _scripted, port=0) as server, connect(server.url) as ws:
        assert unpackb(ws.recv())["kind"] == "metadata"
        ws.send(msgpack.packb({"kind": "infer", "obs": {"task": "reach", "state": _exploit(marker)}}, use_bin_type=True))
        reply = unpackb(ws.recv())
        assert reply["kind"] == "error" and "only bool and numeric arrays" in reply["error"]
        assert "\n" not in reply["error"]
        ws.send(packb({"kind": "infer", "obs": _obs()}))  # the connection still serves
        assert unpackb(ws.recv())["actions"].shape == (4, 3)
    assert not marker.exists()


@contextlib.contextmanager
def _fake_server(metadata: dict[Any, Any], reply: dict[Any, Any] | None = None) -> Iterator[str]:
    """A 'policy server' sending `metadata` on connect and `reply` to every message (plain msgpack)."""

    def handler(ws: Any) -> None:
        ws.send(msgpack.packb({"kind": "metadata", "protocol_version": PROTOCOL_VERSION, **metadata},
                              use_bin_type=True))
        for _ in ws:
            ws.send(msgpack.packb(reply, use_bin_type=True))

    with serve(handler, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
        server.shutdown()


@pytest.fixture
def malicious_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A 'policy server' whose metadata carries the pickle payload."""
    marker = tmp_path / "pwned"
    with _fake_server({"policy": {"vla": "evil", "norm": _exploit(marker)}}) as url:
        yield url, marker


def test_client_refuses_a_pickle_in_the_metadata(malicious_server: tuple[str, Path]) -> None:
    url, marker = malicious_server
    with pytest.raises(PolicyError, match="refused the policy server's metadata.*only bool and numeric") as err:
        PolicyClient(url)
    assert "\n" not in str(err.value) and not marker.exists()


def test_rocket_eval_refuses_a_malicious_server_in_one_line(malicious_server: tuple[str, Path], tmp_path: Path) -> None:
    url, marker = malicious_server
    code, output = run_rocket("eval", "--benchmark", "toy", "--policy", url, "-o", str(tmp_path / "out"), cwd=tmp_path)
    assert_one_line_error(code, output, "refused the policy server's metadata")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_client_refuses_a_hostile_server_in_one_line(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with _fake_server({"policy": {"vla": "../../home"}}) as url:
        with pytest.raises(PolicyError, match="names its VLA '../../home'"):
            PolicyClient(url)
    with _fake_server({"policy": {"vla": "ok"}}, {"kind": "actions", "actions": _exploit(marker)}) as url:
        with PolicyClient(url) as client, pytest.raises(PolicyError, match="refused the policy server's reply"):
            client.infer(_obs())
    with _fake_server({"policy": {"vla": "ok"}}, {"kind": "error", "error": "line one\nTraceback: two"}) as url:
        with PolicyClient(url) as client, pytest.raises(PolicyError) as err:
            client.infer(_obs())
        assert str(err.value) == "policy server: line one Traceback: two"
    assert not marker.exists()


# ---- admission: token, origin, binding ---------------------------------------------------------------


def test_token_is_required_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROCKET_SERVE_TOKEN", raising=False)
    with serve_callable(META, _scripted, port=0, token=TOKEN) as server:
        for wrong in (None, "x" * 32):
            with pytest.raises(PolicyError, match="HTTP 401.*--token"):
                PolicyClient(server.url, token=wrong)
        assert health(server.url) is None and health(server.url, token=TOKEN)["vla"] == "scripted"
        with PolicyClient(server.url, token=TOKEN) as client:
            assert client.infer(_obs()).shape == (4, 3) and client.limits["auth"] is True
        monkeypatch.setenv("ROCKET_SERVE_TOKEN", TOKEN)  # what `rocket eval --token` hands its workers
        with PolicyClient(server.url) as client:
            assert client.infer(_obs()).shape == (4, 3)


@pytest.mark.sim
def test_rocket_eval_sends_the_token_to_its_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROCKET_SERVE_TOKEN", "")  # recorded, so the token `rocket eval --token` sets is undone
    monkeypatch.delenv("ROCKET_SERVE_TOKEN")
    toy = {"vla": "scripted", "num_images": 2, "state_dim": 8, "action_dim": 7, "chunk_size": 4, "cameras": ["a", "b"]}
    args = ("eval", "--benchmark", "toy", "--trials", "1", "--tasks", "0", "--max-steps", "3", "--no-progress")
    with serve_callable(toy, lambda obs: np.zeros((4, 7)), port=0, token=TOKEN) as server:
        code, output = run_rocket(*args, "--policy", server.url, "-o", str(tmp_path / "refused"), cwd=tmp_path)
        assert_one_line_error(code, output, "HTTP 401")
        assert not (tmp_path / "refused").exists()
        code, output = run_rocket(*args, "--policy", server.url, "--token", TOKEN, "-o", str(tmp_path / "ok"),
                                  cwd=tmp_path)
        assert code == 0, output
        assert server.requests > 0 and (tmp_path / "ok" / "results.json").is_file()  # served to the workers


def test_browser_origins_are_refused_unless_allowed() -> None:
    with serve_callable(META, _scripted, port=0, origins=("http://dash.local",)) as server:
        with pytest.raises(InvalidStatus) as err:
            connect(server.url, origin="http://evil.example")
        assert err.value.response.status_code == 403
        with connect(server.url, origin="http://dash.local") as ws:
            assert unpackb(ws.recv())["kind"] == "metadata"


def test_non_loopback_needs_a_token_or_insecure() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("")
    with pytest.raises(RocketError, match="refusing to listen on 0.0.0.0 without a token"):
        serve_callable(META, _scripted, host="0.0.0.0", port=0)
    with pytest.raises(RocketError, match="at least 16"):
        serve_callable(META, _scripted, port=0, token="short")
    for kw in ({"token": TOKEN}, {"insecure": True}):
        server = serve_callable(META, _scripted, host="0.0.0.0", port=0, **kw)
        server.stop()


# ---- limits: frames, inputs, idle connections, connection cap ----------------------------------------


@pytest.mark.slow
def test_frame_limit_comes_from_the_policy_cameras() -> None:
    with serve_callable({**META, "num_images": 2}, _scripted, port=0) as server:
        assert server.frame_bytes == 2 * 896 * 896 * 3 + 64 * 1024
        server.strikes.fade_per_s = 0.0
        with connect(server.url, max_size=None) as ws:
            ws.recv()
            with pytest.raises(ConnectionClosed) as err:
                ws.send(b"\0" * (server.frame_bytes + 1))
                ws.recv()
            assert err.value.rcvd is None or err.value.rcvd.code == 1009  # cut off, or told "message too big"
        assert server.strikes.wait("127.0.0.1") == pytest.approx(0.05)  # counted against its host
        with PolicyClient(server.url) as client:  # the client checks its own frames first
            big = [np.zeros((896, 896, 3), np.uint8)] * 3
            with pytest.raises(PolicyError, match="over the server's frame limit"):
                client.infer(_obs(images=big))
            assert client.infer(_obs()).shape == (4, 3)


class _Tokenized:
    """A policy whose tokenizer counts words (the server must use it for the token limit)."""

    class model:  # noqa: N801 - mimics `Policy.model.tokenizer`
        class tokenizer:  # noqa: N801
            @staticmethod
            def encode(text: str) -> list[str]:
                return text.split()

    def __init__(self) -> None:
        self.calls = 0

    def metadata(self) -> dict[str, Any]:
        return META

    def infer(self, obs: Any) -> dict[str, Any]:
        self.calls += 1
        return {"kind": "actions", "actions": np.ones((4, 3), np.float32), "timing": {}}


def test_input_limits_refuse_before_inference() -> None:
    policy = _Tokenized()
    limits = Limits(image_side=64, task_tokens=10)
    with PolicyServer(policy, port=0, limits=limits) as server, PolicyClient(server.url) as client:
        with pytest.raises(PolicyError, match="image 0 is 65x8.*at most 64 px"):
            client.infer(_obs(images=[np.zeros((65, 8, 3), np.uint8)]))
        with pytest.raises(PolicyError, match="image 0 is 8x65"):
            client.infer(_obs(images=np.zeros((1, 8, 65, 3), np.uint8)))  # stacked cameras
        with pytest.raises(PolicyError, match="characters; this server takes at most 10 tokens"):
            client.infer(_obs(task="x" * 161))
        with pytest.raises(PolicyError, match="11 tokens; this server takes at most 10"):
            client.infer(_obs(task=" ".join(["word"] * 11)))
        assert policy.calls == 0
        assert client.infer(_obs(task="ten words " * 5, images=[np.zeros((64, 64, 3), np.uint8)])).shape == (4, 3)
        assert policy.calls == 1


def test_idle_connections_are_closed_and_the_client_reconnects() -> None:
    with serve_callable(META, _scripted, port=0, limits=Limits(idle_timeout=0.3)) as server:
        with connect(server.url) as ws:
            ws.recv()
            with pytest.raises(ConnectionClosed) as err:
                ws.recv(timeout=5)
            assert err.value.rcvd.code == 1001 and "idle" in err.value.rcvd.reason
        with PolicyClient(server.url) as client:
            time.sleep(0.6)
            assert client.infer(_obs()).shape == (4, 3)


def test_connection_cap_refuses_before_the_handshake() -> None:
    with serve_callable(META, _scripted, port=0, limits=Limits(connections=2)) as server:
        first, second = PolicyClient(server.url), PolicyClient(server.url)
        with pytest.raises(PolicyError, match="HTTP 503.*connection cap"):
            PolicyClient(server.url)
        with socket.create_connection(("127.0.0.1", server.port)) as raw:  # refused before the handshake
            raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert raw.recv(64).startswith(b"HTTP/1.1 503")
        with socket.create_connection(("127.0.0.1", server.port)) as raw:  # a silent one is answered within 1 s
            raw.settimeout(5)
            assert raw.recv(64).startswith(b"HTTP/1.1 503")
        first.close()
        third = None
        for _ in range(250):  # its slot is freed once the server has seen the close
            try:
                third = PolicyClient(server.url)
                break
            except PolicyError:
                time.sleep(0.02)
        assert third is not None and third.infer(_obs()).shape == (4, 3)
        third.close()
        second.close()


def test_offending_hosts_wait_before_their_next_handshake() -> None:
    strikes = Strikes(per_strike_s=0.1, max_wait_s=0.25, fade_per_s=0.0)
    for _ in range(2):
        strikes.add("10.0.0.1")
    assert strikes.wait("10.0.0.1") == pytest.approx(0.2) and strikes.wait("10.0.0.2") == 0.0
    for _ in range(5):
        strikes.add("10.0.0.1")
    assert strikes.wait("10.0.0.1") == pytest.approx(0.25)  # capped
    fading = Strikes(per_strike_s=0.1, fade_per_s=100.0)
    fading.add("h")
    time.sleep(0.05)
    assert fading.wait("h") == 0.0
    with serve_callable(META, _scripted, port=0) as server:
        server.strikes.fade_per_s = 0.0  # no fading while a loaded machine runs the test
        with connect(server.url) as ws:
            ws.recv()
            ws.send(b"\xc1")
            assert unpackb(ws.recv())["kind"] == "error"
        deadline = time.monotonic() + 5  # the strike is counted right after the reply is sent
        while server.strikes.wait("127.0.0.1") == 0.0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.strikes.wait("127.0.0.1") == pytest.approx(0.05)  # the next connection from there waits


# ---- fairness ----------------------------------------------------------------------------------------


def test_fair_queue_is_round_robin_and_bounded() -> None:
    queue = FairQueue(capacity=6)
    for item in ("a1", "a2", "a3", "b1", "c1", "c2"):
        assert queue.put(item[0], item)
    assert not queue.put("d", "d1")
    assert [queue.get() for _ in range(6)] == ["a1", "b1", "c1", "a2", "c2", "a3"]
    assert queue.get(timeout=0.01) is None


def test_a_pipelining_client_cannot_hold_the_others() -> None:
    served: list[str] = []
    release = threading.Event()

    def slow(obs: Any) -> np.ndarray:
        served.append(obs["task"])
        release.wait(10)  # the first request holds the model until the others have queued
        return np.ones((4, 3))

    with serve_callable(META, slow, port=0) as server:
        greedy = connect(server.url)
        greedy.recv()
        for k in range(4):  # four requests at once, none of the replies read yet
            greedy.send(packb({"kind": "infer", "obs": _obs(task=f"greedy{k}")}))
        others = [PolicyClient(server.url) for _ in range(2)]
        threads = [threading.Thread(target=c.infer, args=(_obs(task=f"other{k}"),)) for k, c in enumerate(others)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while health(server.url)["queued"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert served == ["greedy0"] and health(server.url)["queued"] == 2  # greedy's next one is not read yet
        release.set()
        for t in threads:
            t.join(timeout=10)
        for _ in range(4):
            assert unpackb(greedy.recv())["kind"] == "actions"
        greedy.close()
        for c in others:
            c.close()
    # each other client waited for at most one request of the greedy one
    assert served[0] == "greedy0" and sorted(served[1:3]) == ["other0", "other1"], served


def test_no_wire_code_can_unpickle() -> None:
    """The server and client paths neither import msgpack-numpy nor pickle (the benchmark sims read their own files)."""
    root = Path(__file__).resolve().parents[2]
    files = [*root.glob("rocket_core/**/*.py"), *root.glob("cli/*.py")]
    assert len(files) > 20
    for path in files:
        text = path.read_text()
        assert "msgpack_numpy" not in text and "import pickle" not in text and "pickle.load" not in text, path
    assert "msgpack-numpy" not in (root / "pyproject.toml").read_text()
