"""Idle cost: CPU of a dispatcher polling an empty outbox, against a sleeping and a busy process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

from bench.common import (
    BenchEnv,
    BenchError,
    CpuMeter,
    process_sampler,
    ratio,
    reset,
    running_dispatcher,
    say,
    server_samplers,
    wait_ready,
)
from caracal.events import CHANGES

WINDOW_S = 30.0
WARMUP_S = 2.0
TARGET_PERCENT = 2.0


def _helpers() -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes]]:
    """The baselines: a sleeping interpreter, and a busy loop (niced, so it only takes an idle core)."""
    lifetime = WARMUP_S + WINDOW_S + 15
    sleeper = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({lifetime})"])
    busy = subprocess.Popen(["nice", "-n", "19", sys.executable, "-c", "while True: pass"])
    return sleeper, busy


async def _window(meter: CpuMeter) -> dict[str, float]:
    """% of one core used by each group over WINDOW_S, with a progress line every 10 s."""
    meter.start()
    started = time.monotonic()
    while (left := WINDOW_S - (time.monotonic() - started)) > 0:
        await asyncio.sleep(min(10.0, left))
        say(f"  {time.monotonic() - started:.0f} / {WINDOW_S:.0f} s")
    return meter.percent()


def _summary(used: dict[str, float]) -> list[str]:
    dispatcher, sleeper, busy = used["dispatcher"], used["sleep"], used["busy"]
    met = "met" if dispatcher < TARGET_PERCENT else "NOT met"
    return [
        f"idle dispatcher {dispatcher:.2f} % of one core over {WINDOW_S:.0f} s "
        f"(target < {TARGET_PERCENT:.0f} %: {met})",
        f"baselines: sleeping python {sleeper:.2f} %, busy loop {busy:.1f} %; "
        f"ratio to busy loop {ratio(dispatcher, busy)}, ratio to sleep {ratio(dispatcher, sleeper)}, "
        f"above sleep {dispatcher - sleeper:.2f} points",
        f"servers over the same window (all their processes, not only the dispatcher's share): "
        f"postgres {used['postgres']:.2f} %, redis {used['redis']:.2f} %",
    ]


async def run(bench: BenchEnv) -> list[str]:
    say(f"idle: CPU of a dispatcher with an empty outbox over {WINDOW_S:.0f} s (/proc/<pid>/stat)")
    await reset(bench, CHANGES)
    with running_dispatcher(bench, "idle") as dispatcher:
        await wait_ready(bench, dispatcher)
        sleeper, busy = _helpers()
        try:
            await asyncio.sleep(WARMUP_S)  # interpreter start-ups stay outside the window
            processes = {"dispatcher": dispatcher.process, "sleep": sleeper, "busy": busy}
            samplers = {name: process_sampler(p.pid) for name, p in processes.items()}
            used = await _window(CpuMeter({**samplers, **server_samplers(bench)}))
            dispatcher.check_alive()
        finally:
            for helper in (sleeper, busy):
                helper.kill()
                helper.wait()
    if used["busy"] <= 0:
        raise BenchError("the busy loop used no CPU: the window was not measured")
    lines = _summary(used)
    for line in lines:
        say(line)
    return lines
