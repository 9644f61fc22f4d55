"""D4RL-style datasets from a SAC behaviour agent: `decision-seq datasets build ENV --levels ...`.

Follows the MuJoCo recipe of D4RL (Fu et al. 2020, "D4RL: Datasets for Deep Data-Driven
Reinforcement Learning", section 5 and appendix): one Soft Actor-Critic run (Haarnoja et al. 2018)
is trained online and its policy snapshots generate the data levels

- `random`: uniform random actions;
- `medium`: the first snapshot whose evaluation return reaches about 1/3 of the expert's
  (D4RL: "early-stopping the training" at about 1/3 of expert performance);
- `medium-replay`: every transition in SAC's replay buffer up to the medium snapshot, split into
  episodes at terminations and truncations;
- `expert`: the trained policy;
- `medium-expert`: the medium and expert episodes together.

The medium and expert data are generated with the policy's *sampled* (stochastic) actions, as D4RL
did; snapshots are evaluated, and `ref_max_score` is measured, with the deterministic (mean) action.

Why stable-baselines3's SAC: it is a well-kept, tested reference implementation, SAC is the
algorithm D4RL itself used for its MuJoCo datasets, and it is built for continuous (Box) actions.
Its defaults are the standard SAC hyperparameters of Haarnoja et al. (2018) that D4RL's rlkit agents
used; we pass them explicitly (`config.SAC_SETTINGS`) so that an SB3 default change cannot alter a
build silently. Builds are bit-reproducible on the CPU for a given seed (single torch thread by
default); a resumed run differs from an uninterrupted one only after the resume point (the env
restarts there).

Every level is written as a real Minari dataset `<namespace>/<env name>/<level>-v0` (naming.rebuild_id)
with the env id as `env` and `eval_env`, `ref_min_score` = mean return of the uniform random policy
and `ref_max_score` = mean return of the expert policy (both on the same fixed-seed episodes, the
same numbers for every level of one build), and a `decision_seq_build` metadata entry with the
build's settings, snapshot steps and returns.

Modules, in the order a build uses them:
- config.py   BuildConfig (budgets, seeds), the SAC hyperparameters, levels and ids, checks made
              before any training;
- workdir.py  the SAC run's resumable state on disk (state.json, snapshots, replay chunks);
- agent.py    training (or resuming, or reusing) the SAC run and loading its policy snapshots;
- levels.py   choosing the medium and expert snapshots, collecting each level and writing it
              (build_report, the entry point).
The command line (`datasets build` arguments and summary table) is decision_seq/cli/build.py.

Departures from D4RL (each is also commented where it happens):
- Gymnasium's v5 MuJoCo envs (`mujoco` bindings) instead of gym's v2/v3 (`mujoco-py`).
- Default SAC budget 300k env steps (D4RL trained its SAC agents to completion; 1M+ steps is typical
  for SAC on MuJoCo), so that a full Hopper-v5 build takes about 1.5 hours on a 2-core CPU (see
  `BuildConfig`).
- `random` uses uniform random actions (D4RL: a randomly initialized policy), the same policy that
  defines `ref_min_score`.
- The medium threshold is measured between the random and the expert return (normalized score
  1/3), not as a third of the raw expert return, so it is defined for negative-return tasks too.
- `expert` is the best-evaluated snapshot by default (D4RL: the final policy of a converged run).
"""
