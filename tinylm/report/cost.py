"""Training cost estimate: energy from wall-clock x assumed power, money from energy x a price.

Nothing here is measured: the wall-clock and hardware come from the artifacts, the power and
prices are assumptions, and the report prints every one of them next to the result. Override them
with `tinylm report --watts W --usd_per_kwh P --usd_per_hour H`.
"""

from __future__ import annotations

from dataclasses import dataclass

# Board power (W) of GPUs the runtime knows (datasheet TDP / max board power, SXM where both exist).
GPU_BOARD_WATTS = {
    "H200": 700, "H100": 700, "A100": 400, "L40S": 350, "L4": 72, "A10": 150, "RTX 4090": 450, "RTX 3090": 350,
}
# Assumed on-demand cloud price per GPU-hour (USD), rounded typical list prices in 2025-2026.
GPU_USD_PER_HOUR = {
    "H200": 3.5, "H100": 2.5, "A100": 1.5, "L40S": 1.0, "L4": 0.7, "A10": 0.75, "RTX 4090": 0.5, "RTX 3090": 0.3,
}
CPU_WATTS_PER_CORE = 4.0  # a server CPU's TDP share per core: e.g. AMD EPYC 9654, 360 W / 96 cores = 3.75 W
CPU_USD_PER_CORE_HOUR = 0.05  # on-demand compute-optimised vCPU-hour (e.g. AWS c7a: ~$0.05 per vCPU-hour)
USD_PER_KWH = 0.15  # a typical electricity price


@dataclass
class CostAssumptions:
    watts: float | None = None  # total power draw; None = derived from the hardware
    usd_per_kwh: float = USD_PER_KWH
    usd_per_hour: float | None = None  # cloud price of the whole machine; None = derived


@dataclass
class Cost:
    seconds: float
    watts: float
    kwh: float
    usd_energy: float
    usd_per_hour: float
    usd_cloud: float
    power_basis: str  # how `watts` was obtained, in words
    price_basis: str  # how `usd_per_hour` was obtained


def _gpu_key(name: str) -> str | None:
    return next((k for k in GPU_BOARD_WATTS if k in name), None)


def estimate(seconds: float, hardware: dict, a: CostAssumptions, n_gpus: int = 1) -> Cost:
    """Energy and money for `seconds` of training on `hardware` (a meta.json "hardware" dict)."""
    gpu = hardware.get("gpu")
    cores = hardware.get("torch_threads") or hardware.get("threads") or hardware.get("cpu_count")
    if gpu and _gpu_key(gpu):
        key = _gpu_key(gpu)
        watts, basis = GPU_BOARD_WATTS[key] * n_gpus, f"{n_gpus} x {key} board power {GPU_BOARD_WATTS[key]} W"
        hourly, pbasis = GPU_USD_PER_HOUR[key] * n_gpus, f"{n_gpus} x ${GPU_USD_PER_HOUR[key]:.2f} per {key}-hour"
    else:
        if gpu:
            basis_gpu = f"unknown GPU {gpu}: "
        else:
            basis_gpu = ""
        if not cores:
            cores, note = 1, " (thread count not recorded: 1 assumed)"
        else:
            note = ""
        watts = CPU_WATTS_PER_CORE * cores
        basis = f"{basis_gpu}{cores} CPU core(s) x {CPU_WATTS_PER_CORE:g} W (server TDP share per core){note}"
        hourly = CPU_USD_PER_CORE_HOUR * cores
        pbasis = f"{cores} vCPU x ${CPU_USD_PER_CORE_HOUR:.2f} per vCPU-hour"
    if a.watts is not None:
        watts, basis = a.watts, f"{a.watts:g} W given with --watts"
    if a.usd_per_hour is not None:
        hourly, pbasis = a.usd_per_hour, f"${a.usd_per_hour:g} per hour given with --usd_per_hour"
    kwh = watts * seconds / 3.6e6
    return Cost(seconds, watts, kwh, kwh * a.usd_per_kwh, hourly, hourly * seconds / 3600, basis, pbasis)
