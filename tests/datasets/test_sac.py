"""decision_seq.datasets.sac: a tiny SAC build on Pendulum-v1 loaded back from Minari, reuse of a finished run,
resume after an interruption, bad inputs, overwrite, the snapshot rule. The command line is tests/cli/test_build.py."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
import pytest

from decision_seq.data.episodes import load_episodes
from decision_seq.datasets.sac.agent import train_behaviour_agent
from decision_seq.datasets.sac.config import BuildConfig, dataset_id_for, parse_levels
from decision_seq.datasets.sac.levels import build_report, replay_episodes, select_snapshots
from decision_seq.datasets.sac.workdir import Snapshot, load_replay, load_training_state

ENV = "Pendulum-v1"
NS = "test-factory"
# Tiny budget: 500 SAC updates, 3 snapshots; Pendulum episodes are 200 steps, so 400 steps = 2 episodes.
TINY = dict(
    train_steps=600,
    steps_per_level=400,
    snapshot_every=200,
    eval_episodes=2,
    reference_episodes=2,
    learning_starts=100,
    seed=0,
    namespace=NS,
)


@pytest.fixture(scope="module")
def built(minari_root: Path, tmp_path_factory: pytest.TempPathFactory):
    """One tiny build of two levels into the session's Minari root; its work dir is reused below."""
    work = tmp_path_factory.mktemp("factory") / "work"
    report = build_report(ENV, ["medium-replay", "expert"], BuildConfig(**TINY), progress=False, work_dir=work)
    return report


def raw_replay(work: Path) -> dict[str, np.ndarray]:
    """The replay chunks as written (SB3 layout), read independently of load_replay."""
    chunks = sorted((work / "replay").glob("*.npz"))
    out: dict[str, list] = {}
    for path in chunks:
        with np.load(path) as chunk:
            for key in chunk.files:
                out.setdefault(key, []).append(chunk[key])
    return {k: np.concatenate(v) for k, v in out.items()}


def test_dataset_ids_and_levels():
    assert dataset_id_for("Hopper-v5", "medium-replay") == "decision-seq/hopper/medium-replay-v0"
    assert dataset_id_for("HalfCheetah-v5", "expert", "mine") == "mine/halfcheetah/expert-v0"
    assert parse_levels("expert, random,expert") == ["expert", "random"]
    with pytest.raises(ValueError, match="valid levels: random, medium, medium-replay, expert, medium-expert"):
        parse_levels("medium,replay")


def test_build_writes_minari_datasets(built):
    report = built
    ids = {s.level: s.dataset_id for s in report.levels}
    assert ids == {"medium-replay": f"{NS}/pendulum/medium-replay-v0", "expert": f"{NS}/pendulum/expert-v0"}
    assert [s.step for s in report.snapshots] == [200, 400, 600]
    assert report.medium_step <= report.expert_step
    for summary in report.levels:
        ds = minari.load_dataset(summary.dataset_id)
        meta = ds.storage.metadata
        assert meta["ref_min_score"] == report.ref_min_score and meta["ref_max_score"] == report.ref_max_score
        assert meta["num_episodes_average_score"] == TINY["reference_episodes"]
        assert ds.recover_environment(eval_env=True).spec.id == ENV
        assert ds.total_steps == summary.steps and ds.total_episodes == summary.episodes
        assert meta["algorithm_name"].startswith("SAC (stable-baselines3 ") and summary.level in meta["algorithm_name"]
        for text in (summary.level, "seed 0", "600 env steps", f"snapshot {report.medium_step}"):
            assert text in meta["description"], text
        build = meta["decision_seq_build"]
        assert build["env_id"] == ENV and build["seed"] == 0 and build["train_steps"] == 600
        assert build["ref_min_score"] == report.ref_min_score and build["expert_snapshot"] == report.expert_step
        assert [s["step"] for s in build["snapshots"]] == [200, 400, 600]
        assert build["return_mean"] == pytest.approx(summary.mean_return)
        # The suite's own loader reads the scores and the eval env back.
        episodes = load_episodes(summary.dataset_id)
        assert episodes.ref_min_score == report.ref_min_score and episodes.eval_env_spec.id == ENV

    expert = minari.load_dataset(ids["expert"])
    assert expert.total_steps == 400 and expert.total_episodes == 2  # whole 200-step episodes
    assert expert.storage.metadata["decision_seq_build"]["snapshot_steps"] == [report.expert_step]
    for ep in expert.iterate_episodes():
        assert ep.truncations[-1] and not ep.terminations.any()
        assert np.all(np.abs(ep.actions) <= 2.0)


def test_medium_replay_is_the_replay_buffer_prefix(built):
    report = built
    m = report.medium_step
    raw = raw_replay(report.work_dir)
    assert raw["obs"].shape[0] == 600  # every transition kept
    ds = minari.load_dataset(f"{NS}/pendulum/medium-replay-v0")
    eps = list(ds.iterate_episodes())
    assert ds.total_steps == m
    obs = np.concatenate([e.observations[:-1] for e in eps])
    act = np.concatenate([e.actions for e in eps])
    rew = np.concatenate([e.rewards for e in eps])
    np.testing.assert_array_equal(obs, raw["obs"][:m])
    low, high = np.float32(-2.0), np.float32(2.0)
    np.testing.assert_array_equal(act, low + 0.5 * (raw["actions"][:m] + 1.0) * (high - low))  # SB3 unscale_action
    np.testing.assert_array_equal(rew, raw["rewards"][:m].astype(np.float64))
    ends = np.cumsum([len(e.rewards) for e in eps]) - 1
    np.testing.assert_array_equal(np.stack([e.observations[-1] for e in eps]), raw["next_obs"][ends])
    # Pendulum episodes end by the 200-step time limit; the one cut by the medium step is truncated too.
    assert all(len(e.rewards) == 200 for e in eps[:-1]) and all(e.truncations[-1] for e in eps)


def test_finished_run_is_reused_and_levels_combine(built, fresh_minari_root):
    state = built.work_dir / "state.json"
    mtime = state.stat().st_mtime_ns
    report = build_report(
        ENV, ["random", "medium-expert", "medium"], BuildConfig(**TINY), progress=False, work_dir=built.work_dir
    )
    assert state.stat().st_mtime_ns == mtime  # nothing retrained
    # Same fixed-seed references in every build of this run.
    assert (report.ref_min_score, report.ref_max_score) == (built.ref_min_score, built.ref_max_score)
    by_level = {s.level: s for s in report.levels}
    assert by_level["random"].steps == 400 and by_level["medium"].steps == 400
    assert by_level["medium-expert"].steps == 800
    me = minari.load_dataset(by_level["medium-expert"].dataset_id)
    medium = minari.load_dataset(by_level["medium"].dataset_id)
    assert me.storage.metadata["decision_seq_build"]["snapshot_steps"] == [built.medium_step, built.expert_step]
    first = next(iter(me.iterate_episodes()))
    np.testing.assert_array_equal(first.observations, next(iter(medium.iterate_episodes())).observations)
    assert "uniform random" in minari.load_dataset(by_level["random"].dataset_id).storage.metadata["algorithm_name"]


def test_resume_after_interruption(built, tmp_path):
    work = tmp_path / "resume"
    config = BuildConfig(**TINY)

    def interrupt(step: int) -> None:
        if step == 450:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_behaviour_agent(ENV, config, work, progress=False, step_callback=interrupt)
    saved = load_training_state(work)
    assert saved.step == 400 and [s.step for s in saved.snapshots] == [200, 400] and not saved.complete

    seen: list[int] = []
    run = train_behaviour_agent(ENV, config, work, progress=False, step_callback=seen.append)
    assert seen[0] == 401 and seen[-1] == 600  # continued from the committed step
    assert run.complete and [s.step for s in run.snapshots] == [200, 400, 600]
    assert load_training_state(work).step == 600 and len(list(work.glob("agent-*.pt"))) == 1
    data = load_replay(work)
    assert data.rewards.shape == (600,)
    # Up to the interruption the run equals the uninterrupted build of the same seed (reproducible).
    reference = load_replay(built.work_dir, 400)
    np.testing.assert_array_equal(data.observations[:400], reference.observations)
    np.testing.assert_array_equal(data.actions[:400], reference.actions)
    assert [s.eval_returns for s in run.snapshots[:2]] == [s.eval_returns for s in built.snapshots[:2]]
    # The env restarted at the resume: an episode ends (truncated) at step 400.
    episodes = replay_episodes(data, gym.make(ENV).action_space)
    ends = np.cumsum([len(e.rewards) for e in episodes])
    assert 400 in ends and episodes[list(ends).index(400)].truncations[-1]
    # A work dir holding a run with other settings is refused.
    with pytest.raises(ValueError, match="train_steps: saved 600 != 800"):
        train_behaviour_agent(ENV, BuildConfig(**{**TINY, "train_steps": 800}), work, progress=False)


@pytest.mark.parametrize(
    "env_id, levels, overrides, match",
    [
        ("NoSuchEnv-v0", "expert", {}, "NoSuchEnv-v0"),
        ("CartPole-v1", "expert", {}, r"Discrete\(2\).*needs a flat Box"),
        (ENV, "expert,best", {}, "unknown level 'best'; valid levels: random, medium"),
        (ENV, "expert", {"train_steps": 0}, "train_steps must be a positive integer"),
        (ENV, "expert", {"steps_per_level": -5}, "steps_per_level must be a positive integer"),
        (ENV, "expert", {"learning_starts": 600}, "learning_starts"),
    ],
)
def test_bad_input_is_refused_before_training(env_id, levels, overrides, match, tmp_path, fresh_minari_root):
    work = tmp_path / "work"
    with pytest.raises(ValueError, match=match):
        build_report(env_id, parse_levels(levels), BuildConfig(**{**TINY, **overrides}), progress=False, work_dir=work)
    assert not work.exists()


def test_existing_dataset_refused_then_overwritten(built, tmp_path, fresh_minari_root, make_minari_dataset):
    dataset_id = dataset_id_for(ENV, "expert", NS)
    make_minari_dataset(dataset_id, rewards=[[1.0, 2.0, 3.0]])
    data_dir = minari.storage.get_dataset_path(dataset_id) / "data"
    before = {p.name: p.stat().st_mtime_ns for p in data_dir.iterdir()}
    work = tmp_path / "never"
    with pytest.raises(FileExistsError, match=rf"{dataset_id}.*--overwrite"):
        build_report(ENV, ["random", "expert"], BuildConfig(**TINY), progress=False, work_dir=work)
    assert not work.exists()  # nothing trained
    assert not minari.storage.get_dataset_path(dataset_id_for(ENV, "random", NS)).exists()  # nothing written
    assert {p.name: p.stat().st_mtime_ns for p in data_dir.iterdir()} == before
    assert minari.load_dataset(dataset_id).total_steps == 3

    report = build_report(ENV, ["expert"], BuildConfig(**TINY), overwrite=True, progress=False, work_dir=built.work_dir)
    assert [s.level for s in report.levels] == ["expert"]
    replaced = minari.load_dataset(report.levels[0].dataset_id)
    assert replaced.total_steps == 400 and replaced.storage.metadata["algorithm_name"].startswith("SAC")


def test_select_snapshots_rule():
    # Negative returns (as in Pendulum): the medium threshold is measured from the random return.
    snaps = [Snapshot(s, [r]) for s, r in [(1, -1100.0), (2, -900.0), (3, -500.0), (4, -200.0), (5, -300.0)]]
    medium, expert = select_snapshots(snaps, -1200.0)
    assert (medium.step, expert.step) == (3, 4)  # threshold -1200 + 1000 / 3 = -866.7
    medium, expert = select_snapshots(snaps, -1200.0, expert="final")
    assert (medium.step, expert.step) == (2, 5)  # threshold -1200 + 900 / 3 = -900
