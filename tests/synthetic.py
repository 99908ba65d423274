"""A synthetic run directory, written in seconds without running anything: run.json, events and
resources as the runner and the jobs write them, with chosen latencies, misses and failures.
Lets plots, the verdict and the report be tested on known numbers."""

from __future__ import annotations

import json
from pathlib import Path

from kit.config import RunConfig
from kit.room import scenario as scenario_mod

# tests/rooms/short-2.toml built by `kit synth`: two speakers, one line each, 7.9 s, for the tests of how
# a run is driven (dispatch, kills, interrupts, notebooks); pair-2 (17.7 s) where the numbers are the point.
SHORT_ROOM = str(Path(__file__).parent / "rooms" / "short-2")


def short_room_with_a_silent_participant(dst: Path, identity: str = "mo") -> str:
    """The short room plus a participant who is there from start to end and never speaks."""
    import shutil

    import numpy as np
    import soundfile as sf

    shutil.copytree(SHORT_ROOM, dst)
    doc = json.loads((dst / "scenario.json").read_text())
    frames = sf.info(dst / doc["participants"][0]["audio"]).frames
    sf.write(dst / f"{identity}.flac", np.zeros(frames, dtype=np.int16), doc["sample_rate"])
    doc["participants"].append({"identity": identity, "audio": f"{identity}.flac", "join_s": 0.0, "leave_s": None})
    (dst / "scenario.json").write_text(json.dumps(doc))
    return str(dst)


def short_room_with_a_late_reply(dst: Path, delay_s: float) -> str:
    """The short room with bob's reply delay_s later (silence inserted before it on his track, and at
    the end of alice's): a room that goes on long after its first line."""
    import shutil

    import numpy as np
    import soundfile as sf

    shutil.copytree(SHORT_ROOM, dst)
    doc = json.loads((dst / "scenario.json").read_text())
    rate, pad = doc["sample_rate"], int(delay_s * doc["sample_rate"])
    for p in doc["participants"]:
        audio, _ = sf.read(dst / p["audio"], dtype="int16")
        bob = p["identity"] == "bob"
        at = int((min(u["start_s"] for u in doc["utterances"] if u["participant"] == "bob") - 0.3) * rate) if bob else len(audio)
        sf.write(dst / p["audio"], np.concatenate([audio[:at], np.zeros(pad, dtype=np.int16), audio[at:]]), rate)
    for u in doc["utterances"]:
        if u["participant"] == "bob":
            u["start_s"], u["end_s"] = u["start_s"] + delay_s, u["end_s"] + delay_s
    (dst / "scenario.json").write_text(json.dumps(doc))
    return str(dst)


def short_room_of(dst: Path, n: int) -> str:
    """The short room's two tracks each given to n/2 participants (p1..pn, all there from the start):
    a room of many jobs for the tests of how they are spread (what they say does not matter)."""
    import shutil

    shutil.copytree(SHORT_ROOM, dst)
    doc = json.loads((dst / "scenario.json").read_text())
    sources = {p["identity"]: p for p in doc["participants"]}
    names = list(sources)
    doc["participants"] = [{**sources[names[i % 2]], "identity": f"p{i + 1}"} for i in range(n)]
    doc["utterances"] = [{**u, "participant": f"p{i + 1}"} for i in range(n) for u in doc["utterances"]
                         if u["participant"] == names[i % 2]]  # fmt: skip
    (dst / "scenario.json").write_text(json.dumps(doc))
    return str(dst)


PIDS = {"multi_session": 1100, "participant_entrypoint": 1200, "multi_dispatch": 1300}
RUNNER_PID = 1000


def make_run(
    root: Path, scenario: str | Path = "pair-2", archs=("multi_session", "participant_entrypoint", "multi_dispatch"),
    latency: dict | None = None, missed: dict | None = None, cpu: dict | None = None, failed: dict | None = None,
    stt: str = "whisper", extra_config: dict | None = None, dead: tuple = (),
) -> Path:  # fmt: skip
    """latency: arch -> seconds from end of speech to final (default 1.0); missed: arch -> utterance
    indices without a final; cpu: arch -> CPU seconds of each job process; failed: arch -> problem;
    dead: architectures whose jobs never started (no job events, no job processes)."""
    latency, missed, cpu, failed = latency or {}, missed or {}, cpu or {}, failed or {}
    sc = scenario_mod.load(scenario)
    run_dir = Path(root) / "20260101-000000-abcd"
    (run_dir / "events").mkdir(parents=True)
    config = {**RunConfig(scenario=str(sc.path), archs=tuple(archs), stt=stt).to_dict(), **(extra_config or {})}
    record = {
        "run_id": run_dir.name, "complete": not failed, "config": config,
        "scenario": {"name": sc.name, "path": str(sc.path), "sha256": sc.content_hash(), "duration_s": sc.duration_s},
        "model": None if stt != "whisper" else {"source": "bundled", "location": "/models/tiny.en", "sha256": "ab" * 32},
        "versions": {"python": "3.11.7", "livekit-agents": "1.8.9"}, "git_sha": "0" * 40,
        "machine": {"platform": "Linux", "cpu_count": 2, "cpu_model": "Test CPU", "memory_gb": 8.0},
        "started": "2026-01-01T00:00:00+00:00", "ended": "2026-01-01T00:01:00+00:00", "archs": {},
    }  # fmt: skip
    resources = []
    for k, arch in enumerate(archs):
        t0 = 1000.0 + 100 * k
        jobs = {} if arch in dead else _jobs(sc, arch)
        for job, (pid, who) in jobs.items():
            _write_job(run_dir, sc, arch, job, pid, who, latency.get(arch, 1.0), set(missed.get(arch, ())), cpu.get(arch, 10.0))
        _write(run_dir / "events" / f"{arch}-runner.jsonl", [
            _ev(0.0, "run_start", arch, "runner", RUNNER_PID), _ev(sc.duration_s + 2, "run_end", arch, "runner", RUNNER_PID)])  # fmt: skip
        if arch not in dead:  # as in a real run whose jobs never launched: nothing sampled
            resources += _resources(arch, t0, sc.duration_s + 2, jobs, cpu.get(arch, 10.0))
        problems = [failed[arch]] if arch in failed else []
        record["archs"][arch] = {"arch": arch, "t0_mono": t0, "jobs": len(jobs), "complete": not problems, "problems": problems}
    (run_dir / "run.json").write_text(json.dumps(record, indent=1))
    (run_dir / "resources.jsonl").write_text("".join(json.dumps(r) + "\n" for r in resources))
    return run_dir


def _jobs(sc, arch: str) -> dict[str, tuple[int, list[str]]]:
    if arch == "multi_dispatch":
        return {f"j{i}": (PIDS[arch] + i, [p]) for i, p in enumerate(sc.identities, start=1)}
    return {"j1": (PIDS.get(arch, 1900), sc.identities)}


def _ev(t: float, kind: str, arch: str, job: str, pid: int, **fields) -> dict:
    return {"t": t, "kind": kind, "arch": arch, "job": job, "pid": pid, **fields}


def _write(path: Path, events: list[dict]) -> None:
    path.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events))


def _write_job(run_dir, sc, arch, job, pid, who, latency, missed, cpu) -> None:
    evs = [_ev(-0.5, "job_start", arch, job, pid, cold_start_s=1.5)]
    for p in who:
        evs.append(_ev(sc.participant(p).join_s, "participant_joined", arch, job, pid, participant=p))
    for i, u in enumerate(sc.utterances):
        if u.participant not in who or i in missed:
            continue
        vad_end = u.end_s + 0.6
        evs += [
            _ev(u.start_s + 0.1, "speech_start", arch, job, pid, participant=u.participant),
            _ev(vad_end, "speech_end", arch, job, pid, participant=u.participant),
            _ev(u.end_s + latency - 0.01, "recognized", arch, job, pid, participant=u.participant, stt_cpu_s=0.4,
                infer_s=latency - 0.6, audio_s=u.end_s - u.start_s + 1.1),
            _ev(u.end_s + latency, "final", arch, job, pid, participant=u.participant, text=u.text,
                speech_start=u.start_s - 0.5, speech_end=vad_end, stt_cpu_s=0.4, infer_s=latency - 0.6, audio_s=1.0),
        ]  # fmt: skip
    for p in who:
        evs.append(_ev(sc.duration_s, "vad_metrics", arch, job, pid, participant=p, vad_infer_s=2.0, vad_inferences=500))
        evs.append(_ev(sc.duration_s + 0.1, "participant_left", arch, job, pid, participant=p))
    evs.append(_ev(sc.duration_s + 0.5, "job_end", arch, job, pid, proc_cpu_s=cpu))
    _write(run_dir / "events" / f"{arch}-{job}-{pid}.jsonl", sorted(evs, key=lambda e: e["t"]))


def _resources(arch: str, t0: float, window: float, jobs: dict, cpu: float) -> list[dict]:
    rows = []
    for step in range(int(window / 0.2) + 2):
        mono, share = t0 - 0.2 + step * 0.2, max(0.0, (step - 1) * 0.2 / window)
        rows.append({"mono": mono, "arch": arch, "pid": RUNNER_PID, "ppid": 1, "name": "python", "cpu_s": 5 + 2 * share,
                     "rss_mb": 300.0, "pss_mb": 280.0, "sampler_cpu_s": 0.1 * share})  # fmt: skip
        for pid, _ in jobs.values():
            rows.append({"mono": mono, "arch": arch, "pid": pid, "ppid": RUNNER_PID, "name": "python",
                         "cpu_s": 3 + cpu * share, "rss_mb": 400.0, "pss_mb": 300.0})  # fmt: skip
    return rows


def rename_participant(scenario_json: Path, old: str, new: str) -> None:
    """Give a participant of a scenario copy another identity (its audio file stays)."""
    doc = json.loads(scenario_json.read_text())
    for p in doc["participants"]:
        p["identity"] = new if p["identity"] == old else p["identity"]
    for u in doc["utterances"]:
        u["participant"] = new if u["participant"] == old else u["participant"]
    scenario_json.write_text(json.dumps(doc))
