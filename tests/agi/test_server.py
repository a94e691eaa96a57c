"""FastAGI server against a real loopback client playing Asterisk's side of res_agi."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

import pytest

from cti_bridge.agi.decide import AgiDecision
from cti_bridge.agi.server import AgiServer, parse_allow
from cti_bridge.agi.wire import AgiRequest
from cti_bridge.config import AgiConfig

LINKEDID = "1700000000.12"
GET_LINKEDID = "GET VARIABLE CHANNEL(linkedid)"
TOKEN_URL = "https://zammad.example/api/v1/cti/s3cr3tT0ken"


def make_env(script: str = "newcall", args: Sequence[str] = (), **over: str) -> bytes:
    env = {
        "agi_network": "yes",
        "agi_network_script": script,
        "agi_request": f"agi://127.0.0.1:4573/{script}",
        "agi_channel": "PJSIP/trunk-00000012",
        "agi_language": "en",
        "agi_type": "PJSIP",
        "agi_uniqueid": "1700000000.15",
        "agi_version": "20.5.0",
        "agi_callerid": "+4930123456",
        "agi_calleridname": "Jürgen Müller",
        "agi_callingpres": "0",
        "agi_dnid": "4930777000",
        "agi_context": "from-trunk",
        "agi_extension": "4930777000",
        "agi_priority": "2",
    }
    env.update(over)
    for i, arg in enumerate(args, 1):
        env[f"agi_arg_{i}"] = arg
    return "".join(f"{k}: {v}\n" for k, v in env.items()).encode() + b"\n"


def asterisk_reply(cmd: str, linkedid: str) -> bytes:
    if cmd.startswith("GET VARIABLE"):
        return f"200 result=1 ({linkedid})\n".encode()
    if cmd.startswith("SET VARIABLE"):
        return b"200 result=1\n"
    if cmd.startswith("EXEC Hangup"):
        return b"200 result=-1\n"
    return b"510 Invalid or unknown command\n"


Replier = Callable[[str], bytes]


async def agi_call(
    server: AgiServer,
    env: bytes | None = None,
    *,
    reply: Replier | None = None,
    local_addr: tuple[str, int] | None = None,
) -> list[str]:
    """Play one AGI() call; return the commands the daemon sent until it closed the socket."""
    host, port = server.address
    reader, writer = await asyncio.open_connection(host, port, local_addr=local_addr)
    writer.write(make_env() if env is None else env)
    commands: list[str] = []
    try:
        async with asyncio.timeout(10):
            while line := await reader.readline():
                cmd = line.decode().rstrip("\n")
                commands.append(cmd)
                writer.write(reply(cmd) if reply else asterisk_reply(cmd, LINKEDID))
    except ConnectionResetError:
        pass
    finally:
        writer.close()
    return commands


class Decider:
    def __init__(self, decision: AgiDecision | None = None, delay: float = 0.0) -> None:
        self.decision = decision or AgiDecision("none")
        self.delay = delay
        self.requests: list[AgiRequest] = []

    async def __call__(self, request: AgiRequest) -> AgiDecision:
        self.requests.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.decision


@asynccontextmanager
async def serving(
    decide: Callable[[AgiRequest], Awaitable[AgiDecision]],
    *,
    timeout: float = 2.0,
    allow: tuple[str, ...] = (),
    max_connections: int = 256,
    io_timeout: float = 5.0,
) -> AsyncIterator[AgiServer]:
    cfg = AgiConfig(listen="127.0.0.1:0", timeout=timeout, allow=allow)
    server = AgiServer(cfg, decide, max_connections=max_connections, io_timeout=io_timeout)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_reject_hangs_up_busy() -> None:
    decide = Decider(AgiDecision("reject"))
    async with serving(decide) as server:
        commands = await agi_call(server)
        snap = server.snapshot()
    assert commands == [GET_LINKEDID, "SET VARIABLE CTI_ACTION reject", "EXEC Hangup 17"]
    (request,) = decide.requests
    assert request.linkedid == LINKEDID
    assert request.uniqueid == "1700000000.15"
    assert request.channel == "PJSIP/trunk-00000012"
    assert request.calleridname == "Jürgen Müller"
    assert request.network_script == "newcall"
    assert snap["requests"] == 1
    assert snap["decisions"] == {"reject": 1, "dial": 0, "none": 0}
    assert snap["active"] == 0


async def test_decide_script_leaves_the_hangup_to_the_dialplan() -> None:
    decide = Decider(AgiDecision("reject"))
    async with serving(decide) as server:
        commands = await agi_call(server, make_env(script="decide"))
        assert server.snapshot()["decisions"]["reject"] == 1
    assert commands == [GET_LINKEDID, "SET VARIABLE CTI_ACTION reject"]
    assert decide.requests[0].network_script == "decide"


async def test_dial_sets_callerid_num_only() -> None:
    async with serving(Decider(AgiDecision("dial", "+4930777000000"))) as server:
        commands = await agi_call(server)
        assert server.snapshot()["decisions"]["dial"] == 1
    assert commands == [
        GET_LINKEDID,
        "SET VARIABLE CALLERID(num) +4930777000000",
        "SET VARIABLE CTI_ACTION dial",
    ]


async def test_none_sets_action_only() -> None:
    async with serving(Decider()) as server:
        commands = await agi_call(server)
    assert commands == [GET_LINKEDID, "SET VARIABLE CTI_ACTION none"]


async def test_decide_timeout_fails_open() -> None:
    decide = Decider(AgiDecision("reject"), delay=60)
    async with serving(decide, timeout=0.2) as server:
        commands = await agi_call(server)
        snap = server.snapshot()
    assert commands == [GET_LINKEDID, "SET VARIABLE CTI_ACTION none"]
    assert snap["timeouts"] == 1
    assert snap["decisions"]["none"] == 1


async def test_decide_raising_fails_open_without_leaking_token(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def decide(request: AgiRequest) -> AgiDecision:
        raise RuntimeError(f"POST {TOKEN_URL} failed")

    caplog.set_level(logging.DEBUG, logger="cti_bridge")
    async with serving(decide) as server:
        commands = await agi_call(server)
        snap = server.snapshot()
    assert commands == [GET_LINKEDID, "SET VARIABLE CTI_ACTION none"]
    assert snap["errors"] == 1
    assert "RuntimeError" in caplog.text
    assert "s3cr3tT0ken" not in caplog.text


async def test_decide_returning_garbage_fails_open() -> None:
    async def decide(request: AgiRequest) -> AgiDecision:
        return {"action": "reject"}  # type: ignore[return-value]

    async with serving(decide) as server:
        commands = await agi_call(server)
    assert commands == [GET_LINKEDID, "SET VARIABLE CTI_ACTION none"]


@pytest.mark.parametrize(
    "caller_id",
    [
        "4930\n12345",
        "4930\r\nEXEC Hangup 16",
        '"4930123"',
        "4930;Hangup",
        "1" * 25,
        "+",
        "",
        "49 30 12",
        "٤٩٣٠",  # Arabic-Indic digits are str.isdigit() but not [0-9]
        None,
    ],
)
async def test_hostile_caller_id_is_not_set(
    caller_id: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cti_bridge")
    async with serving(Decider(AgiDecision("dial", caller_id))) as server:
        commands = await agi_call(server)
        assert server.snapshot()["decisions"] == {"reject": 0, "dial": 0, "none": 1}
    assert commands == [GET_LINKEDID, "SET VARIABLE CTI_ACTION none"]
    assert "invalid caller id" in caplog.text
    assert "\n" not in caplog.records[-1].getMessage()


async def test_args_to_and_queue() -> None:
    decide = Decider()
    async with serving(decide) as server:
        await agi_call(server, make_env(args=["0049301234", "support"]))
        await agi_call(server, make_env(args=["", "sales"]))
        await agi_call(server, make_env())
        await agi_call(server, make_env(agi_extension="s", agi_dnid="4930555"))
    first, second, third, fourth = decide.requests
    assert first.args == ["0049301234", "support"]
    assert (first.to, first.queue) == ("0049301234", "support")
    assert (second.to, second.queue) == ("4930777000", "sales")
    assert (third.to, third.queue) == ("4930777000", None)
    assert fourth.to == "4930555"


async def test_unknown_script_answers_none() -> None:
    decide = Decider(AgiDecision("reject"))
    async with serving(decide) as server:
        commands = await agi_call(server, make_env(script="zammad/in"))
    assert commands == [GET_LINKEDID, "SET VARIABLE CTI_ACTION none"]
    assert decide.requests == []


async def test_linkedid_falls_back_to_uniqueid_on_odd_replies() -> None:
    def reply(cmd: str) -> bytes:
        if cmd.startswith("GET VARIABLE"):
            return (
                b"520-Invalid command syntax.  Proper usage follows:\n"
                b"Usage: GET VARIABLE <variablename>\n"
                b"520 End of proper usage.\n"
            )
        if cmd.startswith("SET VARIABLE CTI_ACTION"):
            return b"510 Invalid or unknown command\n"
        return asterisk_reply(cmd, LINKEDID)

    decide = Decider(AgiDecision("reject"))
    async with serving(decide) as server:
        commands = await agi_call(server, reply=reply)
    assert decide.requests[0].linkedid == "1700000000.15"
    assert commands == [GET_LINKEDID, "SET VARIABLE CTI_ACTION reject", "EXEC Hangup 17"]


async def test_unsolicited_hangup_line_is_tolerated() -> None:
    def reply(cmd: str) -> bytes:
        if cmd.startswith("GET VARIABLE"):
            return b"HANGUP\n" + f"200 result=1 ({LINKEDID})\n".encode()
        return asterisk_reply(cmd, LINKEDID)

    decide = Decider(AgiDecision("reject"))
    async with serving(decide) as server:
        commands = await agi_call(server, reply=reply)
        snap = server.snapshot()
    # The caller is gone: nothing to decide, nothing more to send, and no desync.
    assert commands == [GET_LINKEDID]
    assert decide.requests == []
    assert snap["dropped"] == 0 and snap["errors"] == 0


async def test_stalled_client_does_not_block_others() -> None:
    decide = Decider(AgiDecision("reject"))
    async with serving(decide, io_timeout=30) as server:
        host, port = server.address
        _, stall_writer = await asyncio.open_connection(host, port)
        stall_writer.write(b"agi_network: yes\nagi_network_scr")  # then nothing
        await stall_writer.drain()
        commands = await agi_call(server)
        assert server.snapshot()["active"] == 1  # the staller is still held
        stall_writer.close()
    assert commands == [GET_LINKEDID, "SET VARIABLE CTI_ACTION reject", "EXEC Hangup 17"]


async def test_stalled_client_is_dropped() -> None:
    async with serving(Decider(), io_timeout=0.3) as server:
        host, port = server.address
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"agi_network: yes\n")
        async with asyncio.timeout(10):
            assert await reader.read() == b""
        writer.close()
        assert server.snapshot()["dropped"] == 1


async def test_dripping_client_is_dropped() -> None:
    """Each line on time, but the environment as a whole never completes."""
    async with serving(Decider(), io_timeout=0.3) as server:
        host, port = server.address
        reader, writer = await asyncio.open_connection(host, port)
        async with asyncio.timeout(10):
            for i in range(100):
                writer.write(b"agi_arg_%d: x\n" % (i + 1))
                await writer.drain()
                await asyncio.sleep(0.05)
                if reader.at_eof() or server.snapshot()["dropped"]:
                    break
            assert await reader.read() == b""
        writer.close()
        assert server.snapshot()["dropped"] == 1
        assert i < 99


async def test_hangup_flood_is_dropped() -> None:
    def reply(cmd: str) -> bytes:
        return b"HANGUP\n" * 100_000  # never the actual reply

    decide = Decider(AgiDecision("reject"))
    async with serving(decide, io_timeout=0.3) as server:
        commands = await agi_call(server, reply=reply)
        assert server.snapshot()["dropped"] == 1
    assert commands == [GET_LINKEDID]
    assert decide.requests == []


async def test_stop_lets_pending_decision_finish() -> None:
    decide = Decider(AgiDecision("reject"), delay=0.2)
    server = AgiServer(AgiConfig(listen="127.0.0.1:0", timeout=2.0), decide)
    await server.start()
    call = asyncio.create_task(agi_call(server))
    async with asyncio.timeout(10):
        while not decide.requests:
            await asyncio.sleep(0.01)
    await server.stop()
    assert await call == [GET_LINKEDID, "SET VARIABLE CTI_ACTION reject", "EXEC Hangup 17"]


@pytest.mark.parametrize(
    "env",
    [
        b"this is not an agi environment\n\n",
        b"agi_network: yes\nAGI_CHANNEL: x\n\n",
        b"\n",  # empty environment
        b"agi_channel: PJSIP/x\n\n",  # no script at all
        b"".join(b"agi_arg_%d: x\n" % i for i in range(1, 500)) + b"\n",
        b"agi_callerid: " + b"9" * 10000 + b"\n\n",
    ],
    ids=["garbage", "uppercase", "empty", "noscript", "toomany", "toolong"],
)
async def test_malformed_env_dropped(env: bytes) -> None:
    decide = Decider(AgiDecision("reject"))
    async with serving(decide) as server:
        commands = await agi_call(server, env)
        snap = server.snapshot()
    assert commands == []
    assert decide.requests == []
    assert snap["dropped"] == 1 and snap["requests"] == 0


async def test_allow_list_refuses_other_peers() -> None:
    decide = Decider(AgiDecision("reject"))
    async with serving(decide, allow=("127.0.0.2/32",)) as server:
        refused = await agi_call(server)  # from 127.0.0.1
        served = await agi_call(server, local_addr=("127.0.0.2", 0))
        snap = server.snapshot()
    assert refused == []
    assert served == [GET_LINKEDID, "SET VARIABLE CTI_ACTION reject", "EXEC Hangup 17"]
    assert snap["refused"] == 1 and snap["requests"] == 1


def test_non_loopback_listen_needs_allow_list() -> None:
    with pytest.raises(ValueError, match="allow"):
        AgiServer(AgiConfig(listen="0.0.0.0:4573"), Decider())
    AgiServer(AgiConfig(listen="0.0.0.0:4573", allow=("10.0.0.0/8", "192.0.2.10")), Decider())
    with pytest.raises(ValueError, match=r"pbx\.example"):
        AgiServer(AgiConfig(listen="0.0.0.0:4573", allow=("pbx.example",)), Decider())


def test_parse_allow() -> None:
    nets = parse_allow(["192.0.2.10", "10.1.2.3/8", "2001:db8::/32"])
    assert [str(n) for n in nets] == ["192.0.2.10/32", "10.0.0.0/8", "2001:db8::/32"]


async def test_connection_limit() -> None:
    async with serving(Decider(), max_connections=1, io_timeout=30) as server:
        host, port = server.address
        _, holder = await asyncio.open_connection(host, port)
        holder.write(b"agi_network: yes\n")
        await holder.drain()
        for _ in range(100):  # wait until the server has accepted the holder
            if server.active:
                break
            await asyncio.sleep(0.01)
        assert await agi_call(server) == []
        assert server.snapshot()["dropped"] == 1
        holder.close()
