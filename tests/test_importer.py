"""Bring your own room (kit/room/importer.py) and the speech detector behind its boundaries (kit/room/boundaries.py)."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from kit.cli import main
from kit.room import boundaries, scenario
from kit.room.audio import downsample, rational_resample, resample, upsample
from kit.room.importer import (
    RATE,
    TAIL_S,
    RecordingError,
    import_room,
    read_mono_16k,
    read_timed,
)
from kit.room.synth import speak

LEAD_S = 0.5  # silence before the speech in every generated recording


def _speech(text: str, rate: int, voice: str = "en-us") -> np.ndarray:
    """espeak-ng speech at `rate` (sox resamples it: independent of the kit's resampler), float32."""
    return speak(text, voice, 170, rate).astype(np.float32) / 32768


def _recording(text: str, rate: int, channels: int = 1, tail_s: float = 0.6) -> np.ndarray:
    """LEAD_S of silence, the speech, tail_s of silence; channels scaled 1, 1/2, 1/3 ... (frames x channels)."""
    clip = _speech(text, rate)
    mono = np.concatenate([np.zeros(round(LEAD_S * rate)), clip, np.zeros(round(tail_s * rate))])
    return np.stack([mono / (c + 1) for c in range(channels)], axis=1).astype(np.float32)


def _write_av(path, samples: np.ndarray, rate: int, codec: str) -> None:
    """Encode with FFmpeg through PyAV (mp3, m4a/aac, webm/opus)."""
    import av

    layout = "mono" if samples.shape[1] == 1 else "stereo"
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        planar = np.ascontiguousarray(samples.T)
        frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=layout)
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def _only_utterance(sc, who):
    utts = [u for u in sc.utterances if u.participant == who]
    assert len(utts) == 1, utts
    return utts[0]


# --- formats, rates, channels --------------------------------------------------------------------------

FORMATS = [  # suffix, writer, rate, channels
    ("wav", "soundfile", 44100, 2),
    ("flac", "soundfile", 22050, 1),
    ("ogg", "soundfile", 48000, 2),
    ("mp3", "libmp3lame", 44100, 2),
    ("m4a", "aac", 48000, 1),
    ("webm", "libopus", 48000, 2),
]


@pytest.mark.parametrize("suffix,writer,rate,channels", FORMATS, ids=[f[0] for f in FORMATS])
def test_each_format_imports_as_16k_mono_with_the_speech_in_place(tmp_path, suffix, writer, rate, channels):
    samples = _recording("Can everyone hear me?", rate, channels)
    path = tmp_path / "in" / f"alice.{suffix}"
    path.parent.mkdir()
    if writer == "soundfile":
        sf.write(path, samples, rate)
    else:
        _write_av(path, samples, rate, writer)
    sc = import_room([str(path)], tmp_path / "room").scenario
    info = sf.info(str(sc.participant("alice").audio))
    assert (info.samplerate, info.channels) == (16000, 1)
    assert abs(info.duration - len(samples) / rate - TAIL_S) < 0.1  # codecs pad by a frame at most
    u = _only_utterance(sc, "alice")
    speech_s = (len(samples) / rate) - LEAD_S - 0.6
    assert abs(u.start_s - LEAD_S) < 0.06, u  # encoder delays are compensated by the decoder
    assert abs(u.end_s - (LEAD_S + speech_s)) < boundaries.END_TOLERANCE_S, u
    assert sc.reference is False and u.text == ""


@pytest.mark.parametrize("from_rate,to_rate", [(44100, 16000), (22050, 16000), (11025, 16000), (16000, 44100)])
def test_any_rate_resamples_a_tone_exactly_and_rejects_aliases(from_rate, to_rate):
    t = np.arange(2 * from_rate) / from_rate
    out = resample((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), from_rate, to_rate)
    expected = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(len(out)) / to_rate)
    assert len(out) == 2 * to_rate and np.abs(out - expected)[500:-500].max() < 1e-4
    if from_rate > to_rate:  # 10 kHz is above the new Nyquist frequency: it must vanish, not fold to 6 kHz
        alias = resample((0.5 * np.sin(2 * np.pi * 10000 * t)).astype(np.float32), from_rate, to_rate)
        assert np.std(alias[500:-500]) < 1e-3 * 0.5


def test_the_general_resampler_is_the_integer_one_for_integer_ratios():
    x = np.random.default_rng(0).standard_normal(4800).astype(np.float32)
    assert np.array_equal(rational_resample(x, 16000, 48000), upsample(x, 3))
    assert np.array_equal(rational_resample(x, 48000, 16000), downsample(x, 3))


def test_odd_rates_and_channels_are_resampled_once_and_downmixed(tmp_path):
    (tmp_path / "in").mkdir()
    sources = {"carol": (44100, 2), "dave": (22050, 1), "erin": (8000, 1), "frank": (11025, 3)}
    for who, (rate, channels) in sources.items():
        sf.write(tmp_path / "in" / f"{who}.wav", _recording("Morning everyone.", rate, channels), rate)
    sc = import_room([str(tmp_path / "in")], tmp_path / "room").scenario
    reference = _recording("Morning everyone.", RATE)[:, 0]
    for who, (rate, channels) in sources.items():
        track = sc.read_audio(who)
        n = min(len(track), len(reference))
        gain = np.mean([1 / (c + 1) for c in range(channels)])  # the mean of the channels
        level_db = 20 * np.log10(np.std(track[:n]) / (gain * np.std(reference[:n])))
        corr = np.corrcoef(track[:n], reference[:n])[0, 1]
        assert abs(level_db) < 0.5, (who, level_db)
        assert corr > (0.8 if rate == 8000 else 0.97), (who, corr)  # 8 kHz has lost everything above 4 kHz
        assert abs(_only_utterance(sc, who).start_s - LEAD_S) < boundaries.START_TOLERANCE_S


def test_different_lengths_are_padded_and_offsets_place_the_recordings(tmp_path):
    (tmp_path / "in").mkdir()
    sf.write(tmp_path / "in" / "alice.wav", _recording("Hello.", RATE, tail_s=0.3), RATE)
    sf.write(tmp_path / "in" / "Bob Smith.wav", _recording("Good morning, how are you?", RATE, tail_s=2.0), RATE)
    sf.write(tmp_path / "in" / "carol.wav", _recording("Hi there.", RATE), RATE)
    result = import_room([str(tmp_path / "in" / "alice.wav"), str(tmp_path / "in" / "Bob Smith.wav@1.5"),
                          str(tmp_path / "in" / "carol.wav@-0.25")], tmp_path / "room")  # fmt: skip
    sc = result.scenario
    assert sc.identities == ["alice", "Bob_Smith", "carol"]  # from the file names, sanitised
    lengths = {sf.info(str(p.audio)).frames for p in sc.participants}
    bob_s = 1.5 + sf.info(str(tmp_path / "in" / "Bob Smith.wav")).duration
    assert lengths == {round((bob_s + TAIL_S) * RATE)}  # all padded to the longest (bob, with his offset) + the tail
    assert sc.participant("Bob_Smith").join_s == 1.5
    assert abs(_only_utterance(sc, "Bob_Smith").start_s - (1.5 + LEAD_S)) < boundaries.START_TOLERANCE_S
    assert abs(_only_utterance(sc, "carol").start_s - (LEAD_S - 0.25)) < boundaries.START_TOLERANCE_S
    assert list(result.participants["offset_s"]) == [0.0, 1.5, -0.25]


# --- transcripts ----------------------------------------------------------------------------------------


def _two_people(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    alice = np.concatenate([_recording("Good morning.", RATE, tail_s=1.0)[:, 0], _recording("Ship it today.", RATE)[:, 0]])
    sf.write(d / "alice.wav", alice, RATE)
    sf.write(d / "bob.flac", _recording("Sounds good.", RATE), RATE)
    return d


def test_plain_text_transcripts_give_text_to_the_detected_utterances(tmp_path):
    d = _two_people(tmp_path)
    (d / "alice.txt").write_text("Good morning.\n\nShip it today.\n")
    (d / "bob.txt").write_text("Sounds good.\n")
    sc = import_room([str(d)], tmp_path / "room").scenario
    assert sc.reference is True
    assert [u.text for u in sc.utterances if u.participant == "alice"] == ["Good morning.", "Ship it today."]
    assert [u.text for u in sc.utterances if u.participant == "bob"] == ["Sounds good."]


def test_webvtt_and_srt_times_are_the_boundaries(tmp_path):
    d = _two_people(tmp_path)
    (d / "alice.vtt").write_text(
        "WEBVTT\n\nNOTE made by hand\n\n1\n00:00:00.500 --> 00:00:01.400 align:start\n<v Alice>Good morning.</v>\n\n"
        "00:02.900 --> 00:03.800\nShip it\ntoday.\n"
    )
    (d / "bob.srt").write_text("1\n00:00:00,480 --> 00:00:01,300\nSounds good.\n")
    sc = import_room([str(d / "alice.wav"), str(d / "bob.flac@2")], tmp_path / "room").scenario
    spans = [(u.participant, u.start_s, u.end_s, u.text) for u in sc.utterances]
    assert spans == [("alice", 0.5, 1.4, "Good morning."), ("bob", 2.48, 3.3, "Sounds good."), ("alice", 2.9, 3.8, "Ship it today.")]


def test_read_timed_parses_hours_and_skips_empty_cues(tmp_path):
    path = tmp_path / "x.vtt"
    path.write_text("WEBVTT\n\n01:00:01.250 --> 01:00:02.000\nlate\n\n00:00:01.000 --> 00:00:02.000\n\n")
    assert [(c.start_s, c.end_s, c.text) for c in read_timed(path)] == [(3601.25, 3602.0, "late")]


@pytest.mark.parametrize(
    "transcripts,message",
    [
        ({"alice.txt": "Good morning.\nShip it today.\n", "bob.txt": "Sounds good.\n", "carol.txt": "Hi.\n"},
         "transcript carol.txt matches no recording (recordings: alice, bob)"),
        ({"alice.txt": "Good morning.\n"}, "transcripts for alice but not for bob"),
        ({"alice.txt": "Good morning ship it today.\n", "bob.txt": "Sounds good.\n"},
         "alice.txt has 1 lines but the speech detector found 2 utterances in alice.wav"),
        ({"alice.vtt": "WEBVTT\n\n00:00:00.500 --> 00:00:09.000\nGood morning.\n", "bob.vtt": "WEBVTT\n"},
         "alice.vtt: a cue ends at 9.00 s, after alice.wav"),
    ],
    ids=["unknown-participant", "some-missing", "line-count", "cue-outside"],
)  # fmt: skip
def test_a_transcript_that_does_not_fit_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, transcripts, message):
    d = _two_people(tmp_path)
    for name, text in transcripts.items():
        (d / name).write_text(text)
    out = tmp_path / "scenarios" / "room"
    assert main(["scenario", "import", str(d), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


@pytest.mark.parametrize("problem", ["missing", "unreadable", "no-audio-stream"])
def test_a_missing_or_unreadable_recording_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, problem):
    d = _two_people(tmp_path)
    bad = d / "carol.mp3"
    if problem == "unreadable":
        bad.write_bytes(b"ID3 this is not really an mp3 file" * 50)
    elif problem == "no-audio-stream":
        bad.write_text("WEBVTT\n")  # text with an audio suffix
    out = tmp_path / "scenarios" / "room"
    assert main(["scenario", "import", str(d / "alice.wav"), str(d / "bob.flac"), str(bad), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    expected = "not found" if problem == "missing" else "cannot decode carol.mp3"
    assert expected in err and err.count("\n") == 1, err
    assert not out.parent.exists() or list(out.parent.iterdir()) == []  # no scenario, no temporary directory


def test_an_existing_scenario_is_kept_unless_forced(tmp_path, capsys):
    d = _two_people(tmp_path)
    out = tmp_path / "room"
    assert main(["scenario", "import", str(d), "-o", str(out)]) == 0
    assert main(["scenario", "import", str(d), "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["scenario", "import", str(d / "alice.wav"), "-o", str(out), "--force", "--name", "solo"]) == 0
    assert scenario.load(out).identities == ["alice"] and scenario.load(out).name == "solo"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "room"]


def test_reference_flag_is_validated_and_defaults_to_true(pair2_copy):
    assert scenario.load(pair2_copy).reference is True
    doc = json.loads(pair2_copy.read_text())
    pair2_copy.write_text(json.dumps({**doc, "reference": "no"}))
    with pytest.raises(scenario.ScenarioError, match="'reference' must be true or false"):
        scenario.load(pair2_copy)


# --- a room without reference text, end to end ------------------------------------------------------------


@pytest.mark.replay
def test_a_room_without_reference_reports_latency_and_cost_but_no_wer(tmp_path, capsys):
    d = _two_people(tmp_path)
    room = tmp_path / "room"
    assert main(["scenario", "import", str(d), "-o", str(room)]) == 0
    assert "WER will be n/a" in capsys.readouterr().out
    results = tmp_path / "results"
    argv = ["compare", "--scenario", str(room), "--arch", "participant_entrypoint", "--stt", "delay:0.3", "--results", str(results)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    run_dir = next(results.iterdir())
    speakers = pd.read_csv(run_dir / "speakers.csv")
    archs = pd.read_csv(run_dir / "architectures.csv")
    assert speakers["wer"].isna().all() and archs["wer"].isna().all()  # absent, not 0
    assert (speakers["matched"] == speakers["utterances"]).all()
    assert speakers["latency_p50"].notna().all() and (speakers["cpu_s"] > 0).all()
    header, *rows = printed.split("per speaker")[1].splitlines()[1:4]
    wer_end = header.index(" WER") + len(" WER")  # columns are right-aligned under their names
    assert [row[:wer_end].split()[-1] for row in rows] == ["n/a", "n/a"], printed


# --- the detector against boundaries known by construction --------------------------------------------------

PHRASES = [  # weak onsets (/f/, /θ/, /h/, /s/) and weak endings (final stops, fading vowels)
    ("Five fresh fish for Sam.", "en-us"), ("She sells sea shells.", "en-gb"), ("Thanks, that's perfect.", "en-us+f3"),
    ("Stop the test.", "en-us+m3"), ("Have you fixed it?", "en-gb+f2"), ("Sixty six.", "en-us"), ("Okay.", "en-us+m1"),
    ("Could you share your screen?", "en-gb"), ("Yes, I think so.", "en-us+f2"), ("Hmm, let me check.", "en-gb+f3"),
]  # fmt: skip


def _noise(colour: str, n: int, rng) -> np.ndarray:
    white = rng.standard_normal(n)
    if colour == "white":
        return white / white.std()
    spectrum = np.fft.rfft(white)
    pink = np.fft.irfft(spectrum / np.sqrt(np.maximum(np.arange(len(spectrum)), 1)), n)  # 1/f power
    return pink / pink.std()


def _noisy_room(clips, colour: str, snr_db: float, seed: int):
    """The clips at random gaps over noise at snr_db (speech power / noise power), plus clicks in the
    gaps; returns the track and the exact sample span of each clip (the ground truth)."""
    rng = np.random.default_rng(seed)
    parts, truth, at = [np.zeros(RATE)], [], RATE
    for clip in clips:
        gap = np.zeros(round(rng.uniform(0.8, 1.5) * RATE))
        truth.append((at / RATE, (at + len(clip)) / RATE))
        parts += [clip, gap]
        at += len(clip) + len(gap)
    track = np.concatenate(parts)
    speech_power = np.mean(np.concatenate(clips) ** 2)
    track = track + _noise(colour, len(track), rng) * np.sqrt(speech_power / 10 ** (snr_db / 10))
    for (_, end), (start, _) in zip(truth, truth[1:]):  # a loud 1 ms click in each gap, at least 0.15 s from speech
        i = round(rng.uniform(end + 0.15, start - 0.15) * RATE)
        track[i : i + 16] += 0.8 * np.hanning(16) * rng.choice([-1, 1])
    return track.astype(np.float32), truth


@pytest.fixture(scope="module")
def clips():
    return [speak(text, voice, 160, RATE).astype(np.float32) / 32768 for text, voice in PHRASES]


@pytest.mark.parametrize("colour", ["white", "pink"])
@pytest.mark.parametrize("snr_db", [10, 15, 20])
def test_detector_finds_speech_boundaries_over_noise_and_clicks(clips, colour, snr_db):
    track, truth = _noisy_room(clips, colour, snr_db, seed=snr_db)
    found = boundaries.detect(track)
    assert len(found) == len(truth), [(round(s.start_s, 2), round(s.end_s, 2)) for s in found]  # no click, no split
    start_err = np.array([s.start_s - t[0] for s, t in zip(found, truth)])
    end_err = np.array([s.end_s - t[1] for s, t in zip(found, truth)])
    assert np.abs(start_err).max() <= boundaries.START_TOLERANCE_S, start_err.round(3)
    assert np.abs(end_err).max() <= boundaries.END_TOLERANCE_S, end_err.round(3)
    assert np.median(np.abs(start_err)) <= 0.02 and np.median(np.abs(end_err)) <= 0.04, (start_err.round(3), end_err.round(3))


def test_detector_is_exact_to_a_frame_on_clean_speech(clips):
    track, truth = _noisy_room(clips[:4], "white", 300, seed=1)  # noise 300 dB down: clean
    found = boundaries.detect(track)
    assert len(found) == len(truth)
    for s, (start, end) in zip(found, truth):
        assert abs(s.start_s - start) <= 0.015 and abs(s.end_s - end) <= 0.015, (s, start, end)


# --- issue 19: damaged and extreme recordings ------------------------------------------------------------


def test_non_finite_samples_are_refused_naming_the_file_sample_and_channel(tmp_path):
    x = np.zeros((16000, 2), dtype=np.float32)
    x[4000, 1] = np.nan
    sf.write(tmp_path / "carol.wav", x, 16000, subtype="FLOAT")
    with pytest.raises(RecordingError, match=r"^carol.wav: 1 samples are not finite .* nan at sample 4000 \(0.250 s\), channel 2"):
        import_room([str(tmp_path / "carol.wav")], tmp_path / "room")
    assert not (tmp_path / "room").exists() and not list(tmp_path.glob(".room.*"))


def test_a_float_recording_at_the_top_of_its_range_is_mixed_without_overflow(tmp_path):
    """Found by tests/test_fuzz.py: two channels near float32's maximum overflowed to infinity when
    averaged in float32; now mixed in float64 and clipped as the int16 track will be."""
    speech = _recording("Can everyone hear me?", RATE, channels=2)
    speech[100] = 3e38
    sf.write(tmp_path / "alice.wav", speech, RATE, subtype="FLOAT")
    track = read_mono_16k(tmp_path / "alice.wav")
    assert np.isfinite(track).all() and np.abs(track).max() <= 1.0
    sc = import_room([str(tmp_path / "alice.wav")], tmp_path / "room").scenario
    assert len(sc.utterances) == 1


def test_an_offset_of_more_than_four_hours_is_a_typo(tmp_path):
    sf.write(tmp_path / "alice.wav", _recording("Hello.", RATE), RATE)
    with pytest.raises(RecordingError, match="an offset of 20000 s is more than 4 hours"):
        import_room([str(tmp_path / "alice.wav@20000")], tmp_path / "room")


def test_bleed_mixes_the_others_in_after_the_utterances_were_found_on_the_clean_tracks(tmp_path, capsys):
    d = _two_people(tmp_path)
    clean = import_room([str(d)], tmp_path / "clean").scenario
    assert main(["scenario", "import", str(d), "-o", str(tmp_path / "bled"), "--bleed-db", "-20", "--bleed-ms", "0"]) == 0
    bled = scenario.load(tmp_path / "bled")
    assert bled.utterances == tuple(dataclasses.replace(u) for u in clean.utterances)  # the same ground truth
    track = {(sc.name, who): sf.read(sc.participant(who).audio, dtype="float64")[0] for sc in (clean, bled) for who in ("alice", "bob")}
    added = track[("bled", "alice")] - track[("clean", "alice")]  # what bleed put on alice's track: bob, 20 dB down
    assert 10 * np.log10(np.mean(added**2) / np.mean(track[("clean", "bob")] ** 2)) == pytest.approx(-20, abs=0.5)
    assert main(["scenario", "import", str(d), "-o", str(tmp_path / "bad"), "--bleed-db", "3"]) == 2
    assert "below 0" in capsys.readouterr().err and not (tmp_path / "bad").exists()
