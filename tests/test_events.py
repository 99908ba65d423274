import json

import pytest

from kit.run.events import COLUMNS, EventLog, read_events


def test_writer_flushes_every_line_and_reader_sorts(tmp_path):
    log = EventLog(tmp_path / "events" / "a.jsonl", t0=0.0, arch="x", job="j1")
    log.emit("final", t=2.0, participant="alice", text="hi", stt_cpu_s=0.1)
    # readable before close: flushed per line
    assert json.loads((tmp_path / "events" / "a.jsonl").read_text().splitlines()[0])["text"] == "hi"
    log.emit("job_start", t=1.0)
    df = read_events(tmp_path)
    assert list(df.columns) == COLUMNS and list(df["kind"]) == ["job_start", "final"]
    with pytest.raises(ValueError, match="unknown event kind"):
        log.emit("nonsense")


def test_reader_tolerates_a_truncated_last_line_only(tmp_path):
    f = tmp_path / "events" / "b.jsonl"
    f.parent.mkdir()
    good = json.dumps({"t": 1.0, "kind": "job_start", "arch": "x", "job": "j", "pid": 1})
    f.write_text(good + "\n" + good[:20])
    assert len(read_events(tmp_path)) == 1
    f.write_text(good[:20] + "\n" + good + "\n")
    with pytest.raises(ValueError, match="malformed"):
        read_events(tmp_path)
