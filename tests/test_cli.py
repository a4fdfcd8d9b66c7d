"""The l1forge command end to end on the smoke preset: real Pythia, real training, real hls4ml C-sim."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

L1FORGE = [sys.executable, "-c", "from l1forge.cli import main; main()"]


def l1forge(*args, timeout=900):
    return subprocess.run([*L1FORGE, *map(str, args)], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def smoke_run(all_run):
    """The tagging task of `run --task all`: (its run directory, its state when killed, the resumed run)."""
    out, _, killed_state, resumed = all_run
    return out / "tagging", killed_state, resumed


def test_summary_schema_and_results(smoke_run):
    out, _, _ = smoke_run
    summary = json.loads((out / "summary.json").read_text())
    assert {"version", "preset", "tasks"} <= summary.keys() and summary["preset"] == "smoke"
    task = summary["tasks"]["tagging"]
    assert task["data"]["n_jets"] == 5 * 150
    for kind in ("gnn", "transformer"):
        assert task["teachers"][kind]["params"] > 0
        assert {"accuracy", "auc", "rejection_at_30", "rejection_at_50"} <= task["teachers"][kind]["metrics"].keys()
        versus = task["teachers"][kind]["vs_baseline_student"]  # paired against the label-trained student
        assert versus["accuracy"]["verdict"] in ("A", "B", "tie") and versus["top_vs_qcd_auc"]["difference_err"] > 0
    student = task["student"]
    assert student["bits"]["weight_bits"] == 6 and student["params"] > 1000
    assert student["metrics"]["accuracy"] > 0.3  # 5 classes: chance is 0.2
    assert student["baseline_metrics"]["accuracy"] > 0.3
    firmware = task["firmware"]
    assert firmware["source"] == "estimate" and firmware["latency_cycles"] > 0 and firmware["ii_cycles"] == 1
    assert set(firmware["resources"]) == {"LUT", "FF", "DSP", "BRAM"}
    emulation = task["emulation"]
    with h5py.File(out / "data" / "jets.h5") as f:
        n_test = int((f["split"][()] == 2).sum())
    assert emulation["events_checked"] == n_test and emulation["mismatches"] == 0
    assert emulation["emulator_events_per_s"] > 0 and emulation["csim_events_per_s"] > 0
    assert (out / "firmware" / "hls_project" / "firmware").is_dir()
    rtl = task["rtl"]  # the Verilog of the same graph, simulated with Verilator against the emulator
    assert rtl["events_checked"] == 2000 and rtl["mismatches"] == 0 and rtl["sim_events_per_s"] > 0
    assert (out / "firmware" / "rtl" / "rtl.json").exists()
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html


def test_killed_run_resumes_only_unfinished_stages(smoke_run):
    out, killed_state, resumed = smoke_run
    final = json.loads((out / "state.json").read_text())
    for stage, entry in killed_state.items():
        assert final[stage] == entry  # finished before the kill: not redone
        assert f"{stage}: up to date" in resumed.stderr
    assert "teach.transformer" not in killed_state or "emulate" not in killed_state
    again = l1forge("run", "--preset", "smoke", "--out", out, "-q")
    assert again.returncode == 0
    assert again.stderr.count("up to date") == len(final)


def test_unknown_config_key_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("student:\n  weight_bitz: 4\n")
    res = l1forge("generate", "--preset", "smoke", "--config", bad, "--out", tmp_path / "run")
    assert res.returncode == 1
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "bad.yaml" in lines[0]
    assert "key 'student.weight_bitz': unknown key (did you mean 'weight_bits'?)" in lines[0]


@pytest.mark.parametrize("task, setting, key, message", [
    ("tagging", "student: {input_type: 'fixed<16,6,RND_CNV,SAT>'}", "student.input_type",
     "unknown rounding mode 'RND_CNV'"),
    ("tagging", "student: {input_type: 'fixed<8,2>'}", "student.input_type",
     "must be signed with RND_CONV rounding and SAT overflow"),
    ("tagging", "student: {family: deepsets, n_constituents: 1}", "student",
     "n_constituents=1: the jet word (jet_word) takes the last slot"),
    ("chain", "chain: {pileups: [20, 60], reference_pileup: 40}", "chain",
     "pileups [20.0, 60.0] must be distinct and include reference_pileup 40"),
    ("chain", "chain: {pileups: [20, 20, 60], reference_pileup: 20}", "chain", "must be distinct"),
    ("chain", "chain: {pileups: [-20, 60]}", "chain.pileups.0", "greater than 0"),
])
def test_a_bad_setting_is_refused_when_the_config_is_read(tmp_path, task, setting, key, message):
    """Before generate runs (not after the teachers have trained): one line naming the file and the key."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"{setting}\n")
    res = l1forge("run", "--task", task, "--preset", "smoke", "--config", bad, "--out", tmp_path / "run")
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 1 and len(lines) == 1, res.stderr[-2000:]
    assert f"bad.yaml: key '{key}'" in lines[0] and message in lines[0]
    assert not (tmp_path / "run" / "data").exists()


def test_corrupt_data_file_is_named(smoke_run, tmp_path):
    out, _, _ = smoke_run
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    with h5py.File(out / "data" / "jets.h5") as src, h5py.File(run / "data" / "jets.h5", "w") as dst:
        for key in src:
            if key != "features":
                src.copy(key, dst)
        dst.attrs.update(src.attrs)
    (run / "state.json").write_text((out / "state.json").read_text())
    res = l1forge("distill", "--preset", "smoke", "--out", run)
    assert res.returncode == 1
    assert "jets.h5" in res.stderr and "features" in res.stderr
    assert not (run / "students" / "student" / "model.h5").exists()


def test_emulate_a_user_model_against_csim(tmp_path):
    from l1forge.students.model import build_student

    model = build_student(16, 5, hidden=(8,))
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(scale=0.5, size=w.shape) for w in model.get_weights()])
    model.save(tmp_path / "user.h5")
    with h5py.File(tmp_path / "inputs.h5", "w") as f:
        f["x"] = rng.normal(scale=5.0, size=(2000, 16))
        f["other"] = np.zeros(3)
    res = l1forge("emulate", "--model", tmp_path / "user.h5", "--data", tmp_path / "inputs.h5", "--dataset", "x",
                  "--check-csim", "--json", tmp_path / "check.json", "--output", tmp_path / "out.npy")
    assert res.returncode == 0, res.stderr[-2000:]
    stats = json.loads((tmp_path / "check.json").read_text())
    assert stats["events_checked"] == 2000 and stats["mismatches"] == 0
    assert np.load(tmp_path / "out.npy").shape == (2000, 5)
    res = l1forge("emulate", "--model", tmp_path / "user.h5", "--data", tmp_path / "inputs.h5")
    assert res.returncode == 1 and "inputs.h5" in res.stderr and "--dataset" in res.stderr


def test_scan_writes_a_pareto_front(smoke_run):
    out, _, _ = smoke_run
    res = l1forge("scan", "--preset", "smoke", "--out", out, "--bits", "4,6", "--reuse", "1", "-q")
    assert res.returncode == 0, res.stderr[-2000:]
    scan = json.loads((out / "summary.json").read_text())["tasks"]["tagging"]["scan"]
    assert [(p["weight_bits"], p["reuse_factor"]) for p in scan["points"]] == [(4, 1), (6, 1)]
    assert all(0.2 < p["metric"] <= 1 and p["LUT"] > 0 for p in scan["points"])
    lut = {p["weight_bits"]: p["LUT"] for p in scan["points"]}
    assert lut[4] < lut[6]  # narrower multipliers cost fewer LUTs
    assert scan["front"] and "Design-space scan" in (out / "report.html").read_text()
    res = l1forge("scan", "--preset", "smoke", "--out", out, "--bits", "4", "--reuse", "1", "--synthesis", "vivado", "-q")
    assert res.returncode != 0 and "--synthesis" in res.stderr and "'vivado'" in res.stderr


def test_deepsets_student_distill_synthesize_emulate(smoke_run, tmp_path):
    """student.family: deepsets on the smoke run's data and teachers: the stages after teach run, the firmware of
    the constituent student is bit-exact against its C-sim on every test jet and it learns (accuracy > 1/5)."""
    out = tmp_path / "run"
    shutil.copytree(smoke_run[0], out)
    config = tmp_path / "deepsets.yaml"
    config.write_text("student: {family: deepsets, n_constituents: 8, epochs: 40}\n")
    for stage in ("distill", "synthesize", "emulate", "report"):
        res = l1forge(stage, "--preset", "smoke", "--out", out, "--config", config, "-q")
        assert res.returncode == 0, (stage, res.stderr[-2000:])
    task = json.loads((out / "summary.json").read_text())["tasks"]["tagging"]
    assert task["student"]["family"] == "deepsets" and task["student"]["n_constituents"] == 8
    for model in ("student", "baseline"):  # both train on jets rotated about their axis, afresh each epoch
        assert json.loads((out / "students" / model / "history.json").read_text())["augment"] == "rotate_about_axis"
    assert task["student"]["augment"] == "rotate_about_axis"
    history = lambda run: json.loads((run / "students" / "student" / "history.json").read_text())  # noqa: E731
    assert history(out)["temperature"] == 1.0 and history(smoke_run[0])["temperature"] == 2.0  # the family's
    assert task["data"]["files"]["events"] == str(out / "data" / "jets.h5") and "path" not in task["data"]  # copied run
    verdict = task["student"]["distilled_vs_baseline"]["accuracy"]  # paired bootstrap on the same test jets
    assert verdict["difference_err"] > 0 and verdict["verdict"] in ("A", "B", "tie")
    assert task["student"]["metrics"]["accuracy_err"] > 0 and "rejection_at_50_n_background" in task["student"]["metrics"]
    graph = json.loads((out / "firmware" / "graph.json").read_text())
    # 7 constituents and the jet word in the last slot; pT (jet: mass), deta (multiplicity), dphi, valid, jet flag
    assert graph["layers"][0]["shape"] == [8, 5] and any(layer["op"] == "global_average" for layer in graph["layers"])
    assert [f["name"] for f in task["student"]["jet_word"]["fields"]] == ["mass", "multiplicity", "jet"]
    emulation = task["emulation"]
    assert emulation["mismatches"] == 0 and emulation["events_checked"] == task["student"]["metrics"]["n"]
    assert task["student"]["firmware_metrics"]["accuracy"] > 0.2 and task["student"]["baseline_metrics"]["accuracy"] > 0.3
    assert task["firmware"]["ii_cycles"] <= 6

    config.write_text("student: {family: deepsets, n_constituents: 80}\n")
    res = l1forge("distill", "--preset", "smoke", "--out", out, "--config", config, "-q")
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert res.returncode == 1 and len(errors) == 1 and "jets.h5: student.n_constituents=80" in errors[0]


def test_synthesize_a_user_model(tmp_path):
    from l1forge.students.model import build_student

    build_student(16, 5, hidden=(8,)).save(tmp_path / "user.h5")
    res = l1forge("synthesize", "--model", tmp_path / "user.h5", "--out", tmp_path / "fw", "--reuse-factor", "2")
    assert res.returncode == 0, res.stderr[-2000:]
    firmware = json.loads((tmp_path / "fw" / "summary.json").read_text())["tasks"]["user"]["firmware"]
    assert firmware["reuse_factor"] == 2 and firmware["ii_cycles"] == 2 and firmware["source"] == "estimate"
    assert 0 < firmware["utilisation_percent"]["LUT"] < 100
    assert list((tmp_path / "fw" / "hls_project" / "firmware").glob("*.so"))  # the C-sim was compiled
    res = l1forge("synthesize", "--model", tmp_path / "user.h5", "--out", tmp_path / "fw2", "--vendor")
    assert res.returncode == 1 and "no Vivado/Vitis HLS on PATH" in res.stderr


@pytest.fixture(scope="module")
def all_run(tmp_path_factory):
    """`l1forge run --task all` on smoke, with one more anomaly signal from a user process file, killed in the middle
    of the tagging task's teachers (tagging runs last), then resumed to the end: (run directory, process file,
    tagging state when killed, the resumed run)."""
    tmp = tmp_path_factory.mktemp("all")
    process = tmp / "zprime.cmnd"
    process.write_text("# a user signal\nNewGaugeBoson:ffbar2gmZZprime = on\nZprime:gmZmode = 3\n32:m0 = 1000.\n"
                       "32:onMode = off\n32:onIfAny = 11 13\n")
    out = tmp / "run"
    args = ["run", "--task", "all", "--preset", "smoke", "--out", str(out), "--process", str(process), "-q"]
    proc = subprocess.Popen([*L1FORGE, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    state = out / "tagging" / "state.json"
    deadline = time.time() + 1800
    while time.time() < deadline and proc.poll() is None:
        if state.exists() and "teach.gnn" in json.loads(state.read_text()):
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # kills it inside the tagging task's 'teach.transformer' (or later)
    proc.wait()
    killed_state = json.loads(state.read_text())
    resumed = l1forge(*args, timeout=1800)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return out, process, killed_state, resumed


def test_all_tasks_into_one_run_directory(all_run):
    """One summary.json with the four task blocks side by side, one report with a section per task; each task in
    its own resumable subdirectory."""
    out = all_run[0]
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["tasks"]) == ["anomaly", "chain", "pileup", "tagging"] and summary["preset"] == "smoke"
    for name, block in summary["tasks"].items():
        assert block["emulation"]["mismatches"] == 0 and block["emulation"]["events_checked"] > 0, name
        assert block["rtl"]["mismatches"] == 0 and block["rtl"]["events_checked"] == 2000, name
        assert (out / name / "state.json").exists() and (out / name / "firmware" / "graph.json").exists()
        if name != "chain":  # the chain's teachers are the pileup task's
            assert any(key.startswith(f"{name}/teach.") for key in summary["stage_seconds"])
    assert summary["tasks"]["tagging"]["data"]["n_jets"] == 5 * 150
    html = (out / "report.html").read_text()
    for name in summary["tasks"]:
        assert f'id="task-{name}"' in html
    assert html.count("C-sim vs emulator agreement") == 4


def test_anomaly_flow_end_to_end(all_run, tmp_path):
    """--task anomaly on smoke: zero-bias stream + signals (one from a user process file), VAE teachers, student,
    firmware bit-exact against the C-sim, efficiencies at fixed rate; a bad process file is named by file and line."""
    run, process = all_run[:2]
    out = run / "anomaly"
    task = json.loads((out / "summary.json").read_text())["tasks"]["anomaly"]
    assert task == json.loads((run / "summary.json").read_text())["tasks"]["anomaly"]
    assert "zprime" in task["data"]["per_sample"]
    assert task["emulation"]["mismatches"] == 0 and task["emulation"]["events_checked"] > 100
    signals = task["student"]["firmware_metrics"]["signals"]
    assert set(signals) >= {"a50_4l", "lq80_btau", "h60_tautau", "hplus60_taunu", "zprime"}
    assert max(s["auc"] for s in signals.values()) > 0.6  # some signal stands out from the zero-bias stream
    for kind in ("gnn", "transformer"):
        assert task["teachers"][kind]["metrics"]["signals"]
    assert task["trigger"]["latency_ok"] and task["trigger"]["ii_ok"] and task["trigger"]["rate_khz"] <= 10.0
    assert "Anomaly detection: efficiency at fixed L1 rate" in (out / "report.html").read_text()

    process = tmp_path / "zprime.cmnd"
    process.write_text("NewGaugeBoson:ffbar2gmZZprime = on\nZprime:noSuchSetting = 3\n")
    res = l1forge("generate", "--task", "anomaly", "--preset", "smoke", "--out", tmp_path / "bad", "--process", process)
    assert res.returncode == 1 and "zprime.cmnd:2" in res.stderr and "noSuchSetting" in res.stderr
    assert not (tmp_path / "bad").exists()  # refused before any stage runs


def test_anomaly_student_and_autoencoder_over_seeds(all_run, tmp_path):
    """`distill --task anomaly --seeds 2` in a copy of the smoke anomaly run: the score student and the autoencoder
    baseline trained twice each (other weights), each seed's metrics those of its own predictions, the median seed's
    files in students/<model>/ for the firmware, and summary.json's mean / spread / stat with a verdict paired over
    the seeds."""
    from l1forge.core.artifacts import read_array
    from l1forge.events.anomaly import read_anomaly
    from l1forge.tasks.anomaly import test_metrics
    from l1forge.tasks.base import mean_auc, median_seed
    from l1forge.tasks.base_report import paired_over_seeds

    out = tmp_path / "anomaly"
    shutil.copytree(all_run[0] / "anomaly", out, ignore=shutil.ignore_patterns("students", "firmware", "emulation"))
    for command in ("distill", "report"):
        res = l1forge(command, "--task", "anomaly", "--preset", "smoke", "--out", out, "-q",
                      *(["--seeds", "2"] if command == "distill" else []))
        assert res.returncode == 0, res.stderr[-3000:]
    state = json.loads((out / "state.json").read_text())
    sample = read_anomaly(out / "data" / "anomaly.h5")
    for model in ("student", "baseline"):
        result, folder = state[f"distill.{model}"]["result"], out / "students" / model
        assert list(result["seeds"]) == ["0", "1"]
        scores = [read_array(folder / "seeds" / seed / "predictions.h5", "score") for seed in result["seeds"]]
        assert not np.array_equal(*scores)  # other initial weights and batches
        for seed, score in zip(result["seeds"], scores):
            assert result["seeds"][seed] == json.loads(json.dumps(test_metrics(sample, score, (1.0, 10.0), 2760)))
        median = median_seed([0, 1], [mean_auc({"metrics": result["seeds"][s]}) for s in ("0", "1")])
        assert result["median_seed"] == median and result["metrics"] == result["seeds"][str(median)]
        assert (folder / "model.h5").read_bytes() == (folder / "seeds" / str(median) / "model.h5").read_bytes()
    seeds = json.loads((out / "summary.json").read_text())["tasks"]["anomaly"]["student"]["seeds"]
    assert seeds["seeds"] == [0, 1] and seeds["firmware_seed"] == state["distill.student"]["result"]["median_seed"]
    per_seed = {m: list(state[f"distill.{m}"]["result"]["seeds"].values()) for m in ("student", "baseline")}
    signal = next(iter(per_seed["student"][0]["signals"]))
    auc = seeds["student"][signal]["auc"]
    assert auc["values"] == [m["signals"][signal]["auc"] for m in per_seed["student"]] and auc["stat"] is None
    assert auc["spread"] == pytest.approx(np.std(auc["values"], ddof=1))
    efficiency = lambda m: m["signals"][signal]["efficiency"]["10kHz"]  # noqa: E731
    half = lambda m: np.mean(m["signals"][signal]["efficiency_err"]["10kHz"])  # noqa: E731
    verdict = seeds["student_vs_baseline"][signal]["10kHz"]
    assert verdict == paired_over_seeds([efficiency(a) - efficiency(b) for a, b in zip(*per_seed.values())],
                                        [np.hypot(half(a), half(b)) for a, b in zip(*per_seed.values())])
    assert "Anomaly detection: trainings (seeds)" in (out / "report.html").read_text()


def test_chain_flow_end_to_end(all_run):
    """--task chain (inside --task all, reusing the pileup task's run): crossings at both pileups, objects from five
    weightings, an autoencoder per weighting, the student chain bit-exact (both students), the rate at pileup 60 for
    the threshold set at 20, and the chain's budget."""
    run = all_run[0]
    out = run / "chain"
    summary = json.loads((out / "summary.json").read_text())
    task = summary["tasks"]["chain"]
    assert "zprime" in task["data"]["per_sample"]  # --process files are signals of the chain too
    assert task["emulation"]["mismatches"] == 0 and task["emulation"]["events_checked"] > 100
    assert task["rtl"]["mismatches"] == 0
    chain = task["chain"]
    assert chain["pileup_run"] == str(run / "pileup") and not (out / "pileup").exists()
    assert chain["pileup_student_csim"]["mismatches"] == 0 and chain["pileup_student_csim"]["events_checked"] == 2000
    assert set(chain["methods"]) == {"none", "chs", "puppi", "teacher", "student", "truth"}
    for method, entry in chain["methods"].items():
        rates = entry["rates"]
        assert set(rates) == {"20", "60"} and rates["20"]["rate_khz"] <= 10.0, method  # set for 10 kHz at 20
        assert rates["60"]["n_above"] >= rates["60"]["n_effective_above"] > 0 or rates["60"]["rate_khz"] == 0
        assert set(entry["fixed_rate"]["60"]["signals"]) >= {"a50_4l", "zprime"}
    # more pileup, more rate for the unmitigated chain: the effect the chain exists to remove
    assert chain["methods"]["none"]["rates"]["60"]["rate_khz"] > 10.0
    truth = chain["methods"]["truth"]["rates"]
    assert truth["60"]["over_truth"] == 1.0 or truth["60"]["rate_khz"] == 0
    # truth objects do not depend on the pileup: its rate at each pileup rests on the test crossings of both
    assert chain["methods"]["truth"]["pooled_pileups"] and not chain["methods"]["student"]["pooled_pileups"]
    student = chain["methods"]["student"]["rates"]
    assert truth["60"]["n_crossings"] == truth["20"]["n_crossings"] == student["20"]["n_crossings"] + \
        student["60"]["n_crossings"]
    budget = chain["budget"]
    assert budget["latency_ns"] == pytest.approx(sum(budget["latency_ns_by_block"].values()))
    assert budget["pileup_student_instances"] >= 1 and budget["LUT"] > 0 and budget["part"].startswith("xcvu13p")
    assert "Pileup mitigation in front of anomaly detection" in (out / "report.html").read_text()
    with h5py.File(out / "data" / "objects.h5") as f:
        assert sorted(f) == ["chs", "none", "puppi", "student", "teacher", "truth"] and f["none"].shape[1:] == (19, 4)


def test_chain_weights_in_blocks_equal_the_whole(all_run, tmp_path, monkeypatch):
    """The weights stage streams over blocks of crossings (its memory bounded at any sample size): blocks of 37
    crossings give the run's objects bit for bit, the same cap percentiles and as many C-sim checks."""
    import l1forge.tasks.chain as chain
    from l1forge.config import load_config
    from l1forge.runner import Runner

    run = all_run[0]
    shutil.copytree(run / "chain", tmp_path / "chain", ignore=shutil.ignore_patterns("students", "firmware"))
    cfg = load_config("smoke", None, task="chain")
    cfg.chain.pileup_run = str(run / "pileup")
    monkeypatch.setattr(chain, "WEIGHT_BLOCK", 37)
    result = Runner(cfg, tmp_path / "chain", progress=False, force=True).task.weights()
    before = json.loads((run / "chain" / "state.json").read_text())["weights"]["result"]
    assert result["student_candidates_p99"] == before["student_candidates_p99"]
    assert result["pileup_student_csim"] == before["pileup_student_csim"] == {"events_checked": 2000, "mismatches": 0}
    with h5py.File(run / "chain" / "data" / "objects.h5") as a, h5py.File(tmp_path / "chain" / "data" / "objects.h5") as b:
        assert sorted(a) == sorted(b) and all(np.array_equal(a[k][()], b[k][()]) for k in a)


def test_chain_autoencoders_over_seeds(all_run, tmp_path):
    """seeds: 2 on a copy of the smoke chain: every mitigation's autoencoder trained twice, the student chain's
    median seed synthesized and emulated bit-exact, and the rates over the trainings: each method's median seed
    gives the main table's rate, the verdicts against PUPPI-like are paired seed by seed."""
    from l1forge.config import load_config
    from l1forge.runner import Runner
    from l1forge.tasks.chain import METHODS

    run = all_run[0]
    shutil.copytree(run / "chain", tmp_path / "chain", ignore=shutil.ignore_patterns("students", "firmware"))
    cfg = load_config("smoke", None, task="chain", overrides={"seeds": 2})
    cfg.chain.pileup_run = str(run / "pileup")
    runner = Runner(cfg, tmp_path / "chain", progress=False)
    for stage in ("distill", "synthesize", "emulate"):
        getattr(runner.task, stage)()
    chain = runner.summary()["tasks"]["chain"]["chain"]
    seeds = chain["seeds"]
    assert seeds["seeds"] == [0, 1] and runner.run.result("emulate")["mismatches"] == 0
    for method in METHODS:
        median = runner.run.result(runner.task._distill_stage(method))["median_seed"]
        for mu, rate in seeds["rates"][method].items():
            assert len(rate["values"]) == 2 and rate["values"][median] == chain["methods"][method]["rates"][mu]["rate_khz"]
    for method, by_pileup in seeds["minus_puppi"].items():
        for mu, verdict in by_pileup.items():
            mine, puppi = seeds["rates"][method][mu], seeds["rates"]["puppi"][mu]
            assert verdict["differences"] == pytest.approx(np.subtract(mine["values"], puppi["values"]))
            assert verdict["verdict"] in ("higher", "lower", "tie") and verdict["seeds"] == 2
            err = np.hypot(np.std(verdict["differences"], ddof=1) / np.sqrt(2), verdict["stat"])
            assert verdict["difference_err"] == pytest.approx(err) and verdict["stat"] > 0


def test_pileup_flow_end_to_end(all_run, tmp_path):
    """--task pileup on smoke: candidates with truth, per-particle teachers and student, firmware bit-exact against
    the C-sim, the resolution table for every method at both test pileups; a resumed run redoes nothing."""
    out = all_run[0] / "pileup"
    summary = json.loads((out / "summary.json").read_text())
    task = summary["tasks"]["pileup"]
    assert task["emulation"]["mismatches"] == 0 and task["emulation"]["events_checked"] == 2000
    table = task["pileup"]["resolution"]
    methods = {"none", "chs", "puppi", "gnn", "transformer", "gnn_ot", "transformer_ot", "student", "student_firmware",
               "truth"}  # each teacher kind trained on truth and by optimal transport (issue 29)
    assert set(table) == {"20", "60"} and all(set(t) == methods for t in table.values())
    for mu, t in table.items():  # the truth weights are the limit every method is measured against
        assert t["truth"]["met"]["resolution_gev"] < t["none"]["met"]["resolution_gev"], mu
        assert t["truth"]["auc"] == 1.0 and 0.5 < t["puppi"]["auc"] < 1.0
    throughput = task["pileup"]["throughput"]
    assert throughput["candidates_per_instance_per_crossing"] == 6  # 240 MHz / 40 MHz / II 1
    assert throughput["per_pileup"]["60"]["instances"] > throughput["per_pileup"]["20"]["instances"]
    assert task["trigger"]["latency_ok"] and task["trigger"]["ii_ok"]
    assert "Pileup mitigation: MET and jet performance versus pileup" in (out / "report.html").read_text()
    cap = task["pileup"]["region_cap"]  # the deployable student reads at most 16 candidates of each of 72 regions
    assert 0 < cap["20"]["candidates_dropped"] < cap["60"]["candidates_dropped"] < 0.5
    assert throughput["per_pileup"]["60"]["candidates_p99"] <= 16 * 72

    res = l1forge("run", "--task", "pileup", "--preset", "smoke", "--out", out)
    assert res.returncode == 0 and res.stderr.count("up to date, skipped") == 9  # generate .. emulate, rtl

    broken = tmp_path / "broken"
    shutil.copytree(out / "data", broken / "data")
    shutil.copy(out / "state.json", broken / "state.json")
    with h5py.File(broken / "data" / "pileup.h5", "r+") as f:
        del f["is_pv"]
    res = l1forge("distill", "--task", "pileup", "--preset", "smoke", "--out", broken, "--force")
    assert res.returncode == 1 and "pileup.h5: dataset 'is_pv' is missing" in res.stderr


def test_ops_prints_the_op_table_with_every_backend():
    """`l1forge ops`: the table derived from the registrations (one row per op, a column per backend)."""
    out = l1forge("ops", timeout=120)
    assert out.returncode == 0, out.stderr
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[-4:-1]]
            for line in out.stdout.splitlines() if line.startswith("| ") and not line.startswith("| op ")}
    assert rows["dense"] == ["yes", "yes", "yes"] and rows["zeropad1d"] == ["yes", "yes", "yes"]
    assert rows["conv2d"] == ["yes", "no", "yes"]  # the estimate does not model conv2d: a zero row, "not modelled"
    assert len(rows) >= 24


def _user_students(tmp_path):
    """A QKeras student (16 -> 8 -> 2, 4-bit weights) and a Keras one with a LayerNormalization, which hls4ml
    converts but the emulator does not reproduce."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_relu

    q = dict(kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=quantized_bits(4, 0, alpha=1))
    inp = tf.keras.Input((16,))
    out = QDense(2, name="logits", **q)(QActivation(quantized_relu(6, 0))(QDense(8, name="hidden", **q)(inp)))
    tf.keras.Model(inp, out).save(tmp_path / "mine.h5")
    inp = tf.keras.Input((16,))
    L = tf.keras.layers
    out = L.Dense(2)(L.Flatten()(L.LayerNormalization(name="ln")(L.Reshape((4, 2))(L.Dense(8)(inp)))))
    tf.keras.Model(inp, out).save(tmp_path / "ln.h5")


def test_tagging_flow_on_a_users_top_tagging_files_student_and_teacher(tmp_path):
    """`run --data 'DIR/*.h5' --student FILE`, then `--teacher FILE` (a teacher's probabilities), on files in the top-tagging reference layout (pandas HDF5, two classes,
    the files' own train/val/test) with the user's QKeras student: the same stages, 0 C-sim and Verilator
    mismatches, provenance of each file in summary.json; a student that would not convert is refused in one line
    before any teacher trains."""
    from test_events_readers import write_toptagging

    (tmp_path / "data").mkdir()
    for k, (name, n) in enumerate((("train", 240), ("val", 80), ("test", 160))):
        write_toptagging(tmp_path / "data" / f"{name}.h5", np.random.default_rng(k), n)
    _user_students(tmp_path)
    config = tmp_path / "cfg.yaml"
    config.write_text("teachers: {kinds: [gnn], epochs: 1}\n")
    args = ["run", "--preset", "smoke", "--config", config, "--data", tmp_path / "data" / "*.h5", "--out", tmp_path / "run",
            "-q"]
    bad = l1forge(*args, "--student", tmp_path / "ln.h5")
    assert bad.returncode == 1 and "ln.h5 does not convert: layer 'ln'" in bad.stdout + bad.stderr
    assert "Traceback" not in bad.stderr and "teach.gnn" not in json.loads((tmp_path / "run" / "state.json").read_text())
    res = l1forge(*args, "--student", tmp_path / "mine.h5")
    assert res.returncode == 0, res.stderr[-2000:]
    task = json.loads((tmp_path / "run" / "summary.json").read_text())["tasks"]["tagging"]
    task_gnn_accuracy = task["teachers"]["gnn"]["metrics"]["accuracy"]
    data = task["data"]
    assert data["source"] == "file" and data["layout"] == "toptagging" and data["class_names"] == ["QCD", "top"]
    assert data["n_jets"] == 480 and sorted(f["path"].rsplit("/", 1)[1] for f in data["source_files"]) == \
        ["test.h5", "train.h5", "val.h5"] and all(len(f["sha256"]) == 64 for f in data["source_files"])
    assert task["emulation"]["events_checked"] == 160 and task["emulation"]["mismatches"] == 0
    assert task["rtl"]["mismatches"] == 0 and task["student"]["metrics"]["top_vs_qcd_auc"] is not None
    assert "top_vs_qcd_auc" in task["teachers"]["gnn"]["metrics"]
    assert task["student"]["params"] == 16 * 8 + 8 + 8 * 2 + 2  # the user's architecture, distilled

    # a teacher from elsewhere: a file of its probabilities (here the GNN's, softmaxed), or one of the wrong shape
    logits = h5py.File(tmp_path / "run" / "teachers" / "gnn" / "predictions.h5")["logits"][()]
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    np.save(tmp_path / "probs.npy", probs / probs.sum(axis=1, keepdims=True))
    np.save(tmp_path / "three.npy", np.zeros((len(logits), 3)))
    bad = l1forge(*args[:-3], "--out", tmp_path / "ext", "--teacher", tmp_path / "three.npy")
    assert bad.returncode == 1 and "three.npy" in bad.stderr and "Traceback" not in bad.stderr
    res = l1forge(*args[:-3], "--out", tmp_path / "ext", "--teacher", tmp_path / "probs.npy", "-q")
    assert res.returncode == 0, res.stderr[-2000:]
    task = json.loads((tmp_path / "ext" / "summary.json").read_text())["tasks"]["tagging"]
    external = task["teachers"]["external"]
    assert external["source"] == "file" and external["outputs_are"] == "probabilities" and task["student"]["teacher"] == "external"
    assert external["metrics"]["accuracy"] == task_gnn_accuracy and task["emulation"]["mismatches"] == 0


def _layout_file(layout: str, folder, rng) -> tuple[list, list]:
    """A file of ``layout`` in ``folder`` written in its exact published layout (tests/test_events_readers.py):
    (the --data and --data-mapping arguments, the class names the reader must report)."""
    import awkward as ak
    import pandas as pd
    import yaml
    from test_events_readers import JETCLASS_LABELS, physics_jets, write_hls4ml, write_jetclass

    from l1forge.events.layout_hls4ml import HLF_NAMES
    from l1forge.events.substructure import pt_eta_phi

    if layout == "hls4ml":
        write_hls4ml(folder / "jetImage_0_30p_0_10000.h5", rng, n=300)
        return ["--data", folder / "*.h5"], ["g", "q", "w", "z", "t"]
    if layout == "jetclass":
        write_jetclass(folder / "HToBB_000.root", rng, 300)
        return ["--data", folder / "HToBB_000.root"], [name.removeprefix("label_") for name in JETCLASS_LABELS]
    if layout == "openml":  # the HLF table: 16 features, no constituents
        y = rng.choice(["g", "q", "t", "w", "z"], 300)
        pd.DataFrame(rng.normal(size=(300, 16)), columns=HLF_NAMES).assign(**{"class": y}).to_csv(
            folder / "hlf.csv", index=False)
        return ["--data", folder / "hlf.csv"], ["g", "q", "w", "z", "t"]
    counts, px, py, pz, _ = physics_jets(rng, 300, 20)  # mapping: jagged parquet columns, one-hot labels
    pt, eta, phi = pt_eta_phi(px, py, pz)
    valid, sig = np.arange(20) < counts[:, None], rng.integers(0, 2, 300)
    ak.to_parquet(ak.zip({"pf_pt": ak.unflatten(pt[valid], counts), "pf_eta": ak.unflatten(eta[valid], counts),
                          "pf_phi": ak.unflatten(phi[valid], counts), "is_sig": sig, "is_bkg": 1 - sig},
                         depth_limit=1), folder / "jets.parquet", row_group_size=100)
    (folder / "map.yaml").write_text(yaml.safe_dump({
        "constituents": {"pt": "pf_pt", "eta": "pf_eta", "phi": "pf_phi"},
        "labels": {"one_hot": ["is_bkg", "is_sig"]}, "classes": ["bkg", "sig"]}))
    return ["--data", folder / "jets.parquet", "--data-mapping", folder / "map.yaml"], ["bkg", "sig"]


@pytest.mark.parametrize("layout", ["hls4ml", "jetclass", "openml", "mapping"])
def test_each_published_layout_through_the_flow(layout, tmp_path):
    """`run --data FILE` on a file in each published layout (the top-tagging one has its own test above), with a
    teacher's probabilities file so that no teacher trains here: read, distilled, synthesized, 0 C-sim and 0
    Verilator mismatches, the layout and the file's classes in summary.json and the report."""
    from l1forge.events.external import read_external

    (tmp_path / "data").mkdir()
    data, classes = _layout_file(layout, tmp_path / "data", np.random.default_rng(5))
    mapping = data[3] if len(data) > 2 else None
    labels = read_external(str(data[1]), mapping=mapping)["arrays"]["labels"]
    teacher = 0.1 / len(classes) + 0.9 * np.eye(len(classes))[labels]  # a confident teacher, one row per jet
    np.save(tmp_path / "teacher.npy", teacher)
    (tmp_path / "cfg.yaml").write_text("rtl: {events: 500}\n")
    res = l1forge("run", "--preset", "smoke", "--config", tmp_path / "cfg.yaml", *data, "--teacher",
                  tmp_path / "teacher.npy", "--out", tmp_path / "run", "-q")
    assert res.returncode == 0, res.stderr[-2000:]
    task = json.loads((tmp_path / "run" / "summary.json").read_text())["tasks"]["tagging"]
    assert task["data"]["layout"] == layout and task["data"]["class_names"] == classes
    assert task["data"]["n_jets"] == len(labels) and task["teachers"]["external"]["outputs_are"] == "probabilities"
    assert task["student"]["teacher"] == "external" and list(task["student"]["metrics"]["auc"]) == classes
    assert task["emulation"]["mismatches"] == 0 and task["emulation"]["events_checked"] == np.sum(
        h5py.File(tmp_path / "run" / "data" / "jets.h5")["split"][()] == 2)
    assert task["rtl"]["mismatches"] == 0 and task["rtl"]["events_checked"] == 500
    report = (tmp_path / "run" / "report.html").read_text()
    assert all(name in report for name in classes)
